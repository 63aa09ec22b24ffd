# Kueue part: Kueue's manager built from its Go module at the release pinned in tools/kueue/go.mod (cached like
# tools/envtest), with that release's CRDs and webhook manifests; the real Kueue tier (tests/cluster/
# test_cluster_kueue.py) runs it against its own control plane. docs/kueue.md says how to set Kueue up for trainings.
.PHONY: kueue

kueue:  ## build Kueue's manager (tools/kueue, the pinned release; cached) and print its folder (kueue, crds/, webhook/)
	@tools/kueue/build.sh
