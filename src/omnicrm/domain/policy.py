"""Contact policy (scenarios/policy.yaml): frequency caps, quiet hours and score weights."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from omnicrm.domain.vocabulary import Channel

Share = Annotated[float, Field(ge=0, le=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Cap(_Strict):
    per_day: int | None = Field(default=None, ge=0, le=100)
    per_week: int | None = Field(default=None, ge=0, le=500)


class QuietHours(_Strict):
    """Local time in the client's zone when nothing but service messages is sent; sends wait."""

    start: dt.time
    end: dt.time


class ScoreWeights(_Strict):
    recency: Share
    interest: Share
    response: Share
    value: Share
    time_of_day: Share

    @model_validator(mode="after")
    def _sum_to_one(self) -> ScoreWeights:
        total = self.recency + self.interest + self.response + self.value + self.time_of_day
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"score weights must add up to 1 (they add up to {total:g})")
        return self


class Policy(_Strict):
    version: int = Field(ge=1)
    caps: Cap
    channel_caps: dict[Channel, Cap] = Field(default_factory=dict)
    quiet_hours: QuietHours
    score_weights: ScoreWeights
    interest_window_days: int = Field(default=14, ge=1, le=365)
    exempt_from_caps: list[str] = Field(default_factory=lambda: ["service"])
    # after a client opens a product (its `opened_at`), no commercial scenario of that product class
    # starts or sends for this many days (0: no such cooling-off)
    acquisition_cooling_off_days: int = Field(default=90, ge=0, le=3650)
