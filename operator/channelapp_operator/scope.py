"""Which namespaces this operator acts in, so that two releases never both act on one app.

A namespace-scoped release of the chart creates a KopfPeering in its namespace,
labelled ``app.kubernetes.io/name=channelapp-operator``. A cluster-wide operator
watches those objects and leaves their namespaces to the namespaced operator; when
the namespaced release is uninstalled (its KopfPeering goes), it takes them back.
A namespace-scoped operator acts in its namespaces only and never defers.
"""

from __future__ import annotations

PEERING_LABEL = {"app.kubernetes.io/name": "channelapp-operator"}


class Scope:
    def __init__(self, clusterwide: bool = False) -> None:
        self.clusterwide = clusterwide
        # namespace -> names of namespaced releases' peering objects in it
        self._deferred: dict[str, set[str]] = {}

    def serves(self, namespace: str | None) -> bool:
        if not self.clusterwide or namespace is None:
            return True
        return not self._deferred.get(namespace)

    def peering_seen(self, namespace: str, name: str, present: bool) -> bool:
        """Record a namespaced release's peering object; True when the namespace changed hands."""
        before = self.serves(namespace)
        names = self._deferred.setdefault(namespace, set())
        if present:
            names.add(name)
        else:
            names.discard(name)
            if not names:
                del self._deferred[namespace]
        return before != self.serves(namespace)
