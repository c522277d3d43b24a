"""A workload without a model, for measuring the engine itself on the simulated GPU: every image is blank and
made at once (the simulated GPU times each batch on its own clock, so what the CPU renders does not matter).
The coverage benchmark runs hundreds of sweeps through the real engine with it; tests of the statistics do too."""

from __future__ import annotations

import numpy as np


class BlankWorkload:
    image = np.zeros((8, 8, 3), dtype=np.uint8)

    def generate(self, first_index: int, count: int) -> list[np.ndarray]:
        return [self.image] * count

    def synchronize(self) -> None:
        pass

    def set_compiled(self, on: bool) -> None:
        self.compiled = on  # nothing to compile; the simulated GPU times both alike

    def release_memory(self) -> None:
        pass

    def prompt_for(self, index: int) -> str:
        return "blank"


class QuietObserver:
    """An observer that watches nothing (the engine's Observer protocol)."""

    def clock_started(self, *args: object) -> None: ...

    def trial_done(self, *args: object) -> None: ...

    def clock_done(self, *args: object) -> None: ...
