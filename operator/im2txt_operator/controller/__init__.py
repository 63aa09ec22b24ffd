"""The controller: the imperative shell (kopf wiring, cache, queue, reconcile, writes, poller) around the pure core."""
