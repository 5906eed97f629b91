import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

# The suite starts many interpreters (the CLI, the sandbox, Ray workers), each importing torch and transformers. The
# set-up (uv) does not byte-compile at install, so where the environment sets PYTHONDONTWRITEBYTECODE every one of
# them compiled those packages from source again (on the 2-core CI machine the suite took 13.5 minutes; with this,
# 11.3; with pip's install-time compiling, 10.1). The cache is written into the project's own .venv.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False
