"""Learning-rate schedules: values at the key steps."""

from __future__ import annotations

import pytest
import torch

from bertforge.training.schedules import ScheduleError, build_schedule, schedule_factor


def _lrs(name: str, warmup: int, total: int, steps: int) -> list[float]:
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=2.0)
    sched = build_schedule(opt, name, warmup, total)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_linear_warmup_then_decay_to_zero():
    lrs = _lrs("linear", 10, 110, 111)
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(1.0) and lrs[10] == pytest.approx(2.0)
    assert lrs[60] == pytest.approx(1.0) and lrs[110] == 0.0


def test_linear_matches_transformers():
    transformers = pytest.importorskip("transformers")
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    ref = transformers.get_linear_schedule_with_warmup(opt, 7, 50)
    for step in range(55):
        assert schedule_factor("linear", 7, 50)(step) == pytest.approx(ref.lr_lambdas[0](step))


def test_google_schedule_is_polynomial_decay_on_the_global_step():
    f = schedule_factor("google", 10, 100)
    assert f(0) == 0.0 and f(5) == 0.5 and f(9) == 0.9
    assert f(10) == pytest.approx(0.9)  # 1 - 10/100: the decay started at step 0
    assert f(50) == pytest.approx(0.5) and f(100) == 0.0 and f(150) == 0.0


def test_time_budget_decays_by_steps_or_clock_whichever_is_further():
    used = [0.0]
    f = schedule_factor("linear", 10, 1010, clock=lambda: used[0])
    assert f(5) == 0.5  # warm-up follows the steps only
    assert f(510) == pytest.approx(0.5)  # clock at 0: the step schedule
    used[0] = 0.75
    assert f(510) == pytest.approx(0.25) and f(1000) == pytest.approx(0.01)  # min of both
    used[0] = 1.0
    assert f(20) == 0.0  # time is up: 0 whatever the step
    used[0] = 1.7  # past the budget (a slow last step): still 0, never negative
    assert f(20) == 0.0
    g = schedule_factor("google", 0, 100, clock=lambda: used[0])
    used[0] = 0.2
    assert g(10) == pytest.approx(0.8) and g(50) == pytest.approx(0.5)


def test_constant_with_warmup_and_without():
    assert [schedule_factor("constant", 4, 10)(s) for s in (0, 2, 4, 9)] == [0, 0.5, 1, 1]
    assert schedule_factor("constant", 0, 10)(0) == 1.0
    assert schedule_factor("linear", 0, 10)(0) == 1.0


def test_scheduler_state_is_weights_only(tmp_path):
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    sched = build_schedule(opt, "google", 3, 9)
    for _ in range(4):
        opt.step()
        sched.step()
    torch.save(sched.state_dict(), tmp_path / "s.pt")
    again = build_schedule(torch.optim.SGD([param], lr=1.0), "google", 3, 9)
    again.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert again.last_epoch == 4 and again.get_last_lr() == sched.get_last_lr()


@pytest.mark.parametrize("args, field", [(("cosine", 0, 10), "cosine"),
                                         (("linear", 0, 0), "total_steps"),
                                         (("linear", 20, 10), "warmup_steps")])
def test_bad_schedule_names_the_field(args, field):
    with pytest.raises(ScheduleError, match=field):
        schedule_factor(*args)
