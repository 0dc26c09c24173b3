"""Scope bookkeeping of a cluster-wide operator (pure)."""

from __future__ import annotations

from channelapp_operator.scope import Scope


def test_namespaced_operator_serves_everything_it_watches() -> None:
    scope = Scope()
    assert not scope.peering_seen("team-a", "channelapp-operator", present=True)
    assert scope.serves("team-a")


def test_cluster_operator_defers_while_a_namespaced_release_is_there() -> None:
    scope = Scope()
    scope.clusterwide = True
    assert scope.peering_seen("team-a", "one", present=True)
    assert not scope.peering_seen("team-a", "two", present=True)
    assert not scope.serves("team-a") and scope.serves("team-b")
    assert not scope.peering_seen("team-a", "one", present=False)
    assert not scope.serves("team-a")
    assert scope.peering_seen("team-a", "two", present=False)
    assert scope.serves("team-a") and scope.serves(None)
