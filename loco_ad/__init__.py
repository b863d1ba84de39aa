"""loco_ad: training-free few-shot detection of logical and structural anomalies."""

from loco_ad.errors import LocoAdError

__all__ = ["LocoAdError", "Pipeline"]


def __getattr__(name: str):
    # Pipeline pulls in torch and the stages; import it only when asked for.
    if name == "Pipeline":
        from loco_ad.pipeline import Pipeline

        return Pipeline
    raise AttributeError(name)
