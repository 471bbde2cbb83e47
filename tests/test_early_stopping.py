"""The early-stopping rules on hand-made learning curves (pure Python, no store)."""

from __future__ import annotations

import json

import pytest

from controller.early_stopping import (
    CONTINUE,
    STOP,
    Asha,
    EarlyStoppingError,
    Hyperband,
    MedianStopping,
    NoEarlyStopping,
    Scheduler,
    check_early_stopping,
    create_scheduler,
    rung_epochs,
)


def test_rungs_are_grace_times_powers_of_eta_below_max_epochs() -> None:
    assert rung_epochs(1, 3, 52) == (1, 3, 9, 27)
    assert rung_epochs(4, 2, 52) == (4, 8, 16, 32)
    assert rung_epochs(1, 3, 1) == ()
    assert Asha(27, grace=1, eta=3).rungs(0) == (1, 3, 9)


def test_asha_pauses_all_but_the_top_third_at_a_rung_and_promotes_as_the_rung_fills() -> None:
    asha = Asha(9, grace=1, eta=3)
    # the first two trials at rung 1: a third of 1 or 2 is nobody, so both pause
    assert asha.on_report(0, 1, 0.5) is STOP
    assert asha.on_report(1, 1, 0.9) is STOP
    assert asha.promotion() is None
    # the third makes the top third one trial: trial 1 (0.9), not the newcomer (0.6)
    assert asha.on_report(2, 1, 0.6) is STOP
    assert asha.promotion() == (1, 1)
    # trial 1 resumes from its rung-1 checkpoint and reports epoch 2: it was promoted
    assert asha.on_report(1, 2, 0.91) is CONTINUE
    assert asha.promotion() is None and 1 not in asha.paused
    # a newcomer that beats the others at rung 1, once the share allows it, goes on at once
    assert asha.on_report(3, 1, 0.3) is STOP
    assert asha.on_report(4, 1, 0.4) is STOP
    assert asha.on_report(5, 1, 0.95) is CONTINUE  # six at rung 1: two may go on, 1 and 5
    assert asha.paused == {0: 1, 2: 1, 3: 1, 4: 1}
    # past the last rung nothing stops
    assert asha.on_report(1, 3, 0.92) is STOP  # alone at rung 3
    assert asha.on_report(1, 3, 0.92) is STOP  # a repeat changes nothing


def test_asha_promotes_from_the_highest_rung_first() -> None:
    asha = Asha(9, grace=1, eta=2)  # rungs 1, 2, 4, 8
    assert asha.on_report(0, 1, 0.2) is STOP  # alone: half of one is nobody
    assert asha.on_report(1, 1, 0.1) is STOP  # two: one may go on, trial 0
    assert asha.promotion() == (0, 1)
    assert asha.on_report(0, 2, 0.5) is STOP  # promoted, alone at rung 2: paused again
    assert asha.on_report(2, 1, 0.15) is STOP  # three: still one, and that is trial 0
    assert asha.on_report(3, 1, 0.05) is STOP  # four: two may go on, 0 (promoted) and 2
    # rung 2 holds trial 0 only; rung 1 owes trial 2 a promotion
    assert asha.promotion() == (2, 1)
    assert asha.on_report(2, 2, 0.4) is STOP  # two at rung 2: trial 0 (0.5) may go on, not 2
    assert asha.promotion() == (0, 2)  # the higher rung's promotion comes first


def test_asha_on_a_curve_whose_early_epochs_mislead() -> None:
    # Trial 0 starts slow and ends best: halving at epoch 1 promotes trial 1, at epoch 3 trial 0.
    curves = {0: [0.1, 0.2, 0.9, 0.95], 1: [0.5, 0.55, 0.6, 0.6], 2: [0.4, 0.45, 0.5, 0.5]}

    def promoted(grace: int) -> tuple[int, int] | None:
        asha = Asha(4, grace=grace, eta=3)
        for trial, curve in curves.items():
            for epoch in range(1, grace + 1):
                asha.on_report(trial, epoch, curve[epoch - 1])
        return asha.promotion()

    assert promoted(1) == (1, 1)
    assert promoted(3) == (0, 3)


def test_hyperband_brackets_are_asha_with_later_first_rungs_and_fixed_by_trial_id() -> None:
    band = Hyperband(27, grace=1, eta=3)
    assert [b.rungs(0) for b in band.brackets] == [(1, 3, 9), (3, 9), (9,), ()]
    # Hyperband's shares: 27, 12, 6, 4 configurations over the brackets
    assert [band.cycle.count(b) for b in range(4)] == [27, 12, 6, 4]
    assert Hyperband(27, grace=1, eta=3).bracket(17) == band.bracket(17)
    last = next(t for t in range(100) if band.bracket(t) == 3)
    first = next(t for t in range(100) if band.bracket(t) == 0)
    assert band.rungs(last) == ()
    assert all(band.on_report(last, epoch, 0.0) is CONTINUE for epoch in range(1, 28))
    assert band.on_report(first, 1, 0.5) is STOP and band.paused == {first: 1}


def test_median_rule_stops_a_trial_below_the_median_of_the_others_running_means() -> None:
    median = MedianStopping(10, grace=2, min_trials=2)
    for trial, curve in {0: [0.5, 0.6, 0.7], 1: [0.3, 0.4, 0.5]}.items():
        for epoch, value in enumerate(curve, 1):
            assert median.on_report(trial, epoch, value) is CONTINUE  # too few others to judge
    assert median.on_report(2, 1, 0.1) is CONTINUE  # before grace
    # others' running means to epoch 2: 0.55 and 0.35, median 0.45; best so far 0.44 < 0.45
    assert median.on_report(2, 2, 0.44) is STOP
    assert median.on_report(3, 1, 0.2) is CONTINUE
    assert median.on_report(3, 2, 0.46) is CONTINUE  # median of 0.55, 0.35, 0.27 is 0.35
    assert median.rungs(3) == () and median.promotion() is None


def test_no_early_stopping_never_stops() -> None:
    none = NoEarlyStopping(5)
    assert all(none.on_report(t, e, -t) is CONTINUE for t in range(5) for e in range(1, 6))
    assert none.rungs(0) == () and none.promotion() is None


REPORTS = [(t, e, ((t * 7919) % 13) / 13 + e / 100) for e in range(1, 10) for t in range(12)]


@pytest.mark.parametrize(
    "make",
    [
        lambda: Asha(9, grace=1, eta=3),
        lambda: Hyperband(9, grace=1, eta=2),
        lambda: MedianStopping(9, grace=2, min_trials=3),
        lambda: NoEarlyStopping(9),
    ],
    ids=["asha", "hyperband", "median", "none"],
)
def test_state_round_trips_through_json_mid_rung(make) -> None:  # type: ignore[no-untyped-def]
    # Feed half the reports, save through JSON, restore into a fresh scheduler: it answers the
    # rest (and its promotions) exactly as one that never stopped.
    original, answers = make(), []
    half = len(REPORTS) // 2
    for report in REPORTS[:half]:
        original.on_report(*report)
    restored: Scheduler = make()
    restored.set_state(json.loads(json.dumps(original.get_state())))
    for report in REPORTS[half:]:
        answers.append((original.on_report(*report), original.promotion()))
        assert (restored.on_report(*report), restored.promotion()) == answers[-1]
    assert restored.get_state() == original.get_state()
    assert {decision for decision, _ in answers} <= {CONTINUE, STOP}


def test_the_job_option_is_checked_and_completed() -> None:
    assert check_early_stopping(None, 10) is None
    assert check_early_stopping("none", 10) is None
    assert check_early_stopping("asha", 10) == {"name": "asha", "settings": {"grace": 1, "eta": 3.0}}
    assert check_early_stopping({"name": "hyperband", "settings": {"eta": 2}}, 10) == {
        "name": "hyperband",
        "settings": {"grace": 1, "eta": 2.0},
    }
    assert check_early_stopping({"name": "median"}, 10) == {
        "name": "median",
        "settings": {"grace": 1, "min_trials": 3},
    }
    assert isinstance(create_scheduler("asha", 10), Asha)
    assert isinstance(create_scheduler(None, 10), NoEarlyStopping)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("sha", "unknown rule 'sha'"),
        ({"name": "asha", "settings": {"reduction": 3}}, "unknown setting(s) ['reduction'] for asha"),
        ({"name": "asha", "settings": {"eta": 1}}, "eta must be above 1"),
        ({"name": "asha", "settings": {"grace": 1.5}}, "grace must be an integer"),
        ({"name": "asha", "settings": {"grace": 10}}, "grace is 10 epochs, but trials train only 10"),
        ({"name": "median", "settings": {"min_trials": True}}, "min_trials must be an integer"),
        ({"rule": "asha"}, "give a rule's name"),
        (3, "give one of"),
        ({"name": "none", "settings": {"grace": 2}}, "'none' takes no settings"),
    ],
)
def test_bad_options_say_what_to_fix(option: object, message: str) -> None:
    with pytest.raises(EarlyStoppingError, match=None) as raised:
        check_early_stopping(option, 10)
    assert message in str(raised.value)
