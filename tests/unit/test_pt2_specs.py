"""engine_runner.torch_models.pt2_input_specs on torch.export programs whose dims are bounded or not."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from engine_runner.torch_models import pt2_input_specs  # noqa: E402


class _Sum(torch.nn.Module):
    def forward(self, x, ids):  # type: ignore[no-untyped-def]
        return x.sum() + ids.float().sum()


def test_an_unbounded_dim_reads_as_no_upper_bound_and_a_bounded_one_keeps_its_bound() -> None:
    from torch.export import Dim, export

    b, s = Dim("b"), Dim("s", max=512)  # b: no upper bound (torch's int_oo)
    ep = export(_Sum(), (torch.randn(2, 3), torch.ones(2, 7, dtype=torch.long)), dynamic_shapes=({0: b}, {0: b, 1: s}))
    specs, defaults, ranges = pt2_input_specs(ep)
    assert [(sp.name, sp.dtype, sp.shape) for sp in specs] == [("x", "float32", ("batch", 3)),
                                                               ("ids", "int64", ("batch", "sequence"))]
    assert defaults == {"sequence": 7}
    assert ranges["batch"][1] is None and ranges["sequence"][1] == 512
