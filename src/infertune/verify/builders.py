"""The built-in verifiers, registered by the names the command line uses (see ``infertune.verify.registry``)."""

from __future__ import annotations

from pathlib import Path

from infertune.verify.registry import register


@register("oracle", summary="the task's own checker: Best-of-N by it is pass@N")
def _oracle(task, argument):
    from infertune.verify.verifiers import OracleVerifier

    return OracleVerifier(task)


@register("agreement", compares_samples=True,
          summary="share of the prompt's other samples with the same answer (label-free)")
def _agreement(task, argument):
    from infertune.verify.verifiers import MajorityAgreement

    return MajorityAgreement(task)


@register("rm", needs_path=True, summary="a transformers sequence classifier as a reward model (its logit)")
def _reward_model(task, path):
    from infertune.verify.verifiers import RewardModelVerifier

    return RewardModelVerifier.from_pretrained(path)


def _causal_lm(spec):
    """The policy a self-scoring verifier reads, loaded as ``--model`` loads it (tiny, smollm2 or a local folder;
    nothing from a model hub)."""
    from infertune.models.loading import load

    loaded = load(spec)
    return loaded.model, loaded.tokenizer


@register("confidence", needs_path=True, summary="the policy's mean token log-probability of the completion")
def _confidence(task, path):
    from infertune.verify.verifiers import SelfConfidence

    return SelfConfidence(*_causal_lm(path), mode="mean_logprob")


@register("p_true", needs_path=True, summary="the model's probability of ' True' when asked if the answer is right")
def _p_true(task, path):
    from infertune.verify.verifiers import SelfConfidence

    return SelfConfidence(*_causal_lm(path), mode="p_true")


@register("learned", needs_path=True, summary="a LearnedRewardModel folder (infertune's small outcome reward model)")
def _learned(task, path):
    from infertune.verify.learned_rm import LearnedRewardModel

    return LearnedRewardModel.load(Path(path))


def _prm(aggregate: str):
    def build(task, path):
        from infertune.verify.prm import ProcessRewardModel

        return ProcessRewardModel.load(Path(path), aggregate=aggregate)

    return build


register("prm", needs_path=True, summary="a process reward model folder (infertune prm), scoring a whole answer by "
                                         "its last step's value")(_prm("last"))
register("prm-min", needs_path=True, summary="the same PRM, scoring an answer by its weakest step")(_prm("min"))
register("prm-prod", needs_path=True, summary="the same PRM, scoring an answer by the product of its step "
                                              "values")(_prm("prod"))
