"""Numbering's recovery after Redis loses its data: application code over narrow ports of its
own (`ports`: the store's epoch ledger, the write queues, the epoch registry Redis keeps),
written once for both topologies (`recovery`: one global epoch, or an epoch per
application on Redis Cluster). The README's "Numbering and Redis" holds the argument."""
