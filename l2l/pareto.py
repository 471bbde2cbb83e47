"""Pareto fronts of (score to maximise, cost to minimise) pairs, and their 2-D hypervolume."""

from __future__ import annotations

from collections.abc import Sequence


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates (score >= and cost <=, one strictly),
    ordered by cost, then score; of equal points the first is kept."""
    order = sorted(range(len(points)), key=lambda i: (points[i][1], -points[i][0], i))
    front: list[int] = []
    for i in order:
        score, cost = points[i]
        if not front or score > points[front[-1]][0]:
            front.append(i)
    return front


def hypervolume(points: Sequence[tuple[float, float]], max_cost: float, min_score: float = 0.0) -> float:
    """Area dominated by ``points`` within score >= ``min_score`` and cost <= ``max_cost``,
    divided by ``max_cost`` (so it is in the score's units). Points outside count for nothing."""
    inside = [(s, c) for s, c in points if s > min_score and c < max_cost]
    front = [inside[i] for i in pareto_front(inside)]
    area = 0.0
    for k, (score, cost) in enumerate(front):
        next_cost = front[k + 1][1] if k + 1 < len(front) else max_cost
        area += (score - min_score) * (next_cost - cost)
    return area / max_cost
