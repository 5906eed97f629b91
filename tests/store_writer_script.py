"""Writes a known grid of samples into a store, slowly, resuming whatever is already there (used by the kill test)."""

import sys
import time

from infertune.store import Sample, SampleStore


def expected_completion(prompt: int, index: int) -> str:
    return f"completion of prompt {prompt} sample {index}"


def main(path: str, prompts: int, n: int, delay: float) -> None:
    store = SampleStore(path)
    with store.writer(flush_rows=4, flush_seconds=60) as writer:
        for p in range(prompts):
            for i in range(n):
                sample = Sample(task="kill", prompt_id=f"p{p:03d}", sample_index=i, temperature=0.7,
                                completion=expected_completion(p, i), reward=float((p + i) % 2),
                                answer=str((p * i) % 3), scores={"orm": (p + i) / 100})
                if writer.write(sample):
                    time.sleep(delay)
    print("finished", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
