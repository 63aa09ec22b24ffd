# A one-node Kubernetes on this machine (tools/node): real kubelet, containerd, runc, CNI bridge; needs root.
# `make cluster` prints the kubeconfig's path last; cluster-images builds the images with buildah and imports them
# into the node's containerd; cluster-deploy deploys the operator from manifests/base with those images.
.PHONY: cluster cluster-down cluster-images cluster-deploy
NODE_KUBECONFIG := /var/lib/im2txt-node/control-plane/admin.kubeconfig
NODE_CTR := ctr --address /var/lib/im2txt-node/containerd.sock -n k8s.io

cluster: $(STAMP)  ## start a one-node cluster here (kubelet + containerd; root); prints its kubeconfig path last
	$(PY) tools/node/cluster.py up

cluster-down: $(STAMP)  ## stop the one-node cluster and undo every host change it made
	$(PY) tools/node/cluster.py down

cluster-images: $(STAMP)  ## build both images with buildah (CPU TensorFlow) and import them into the node
	@# Not `for a in $$(images.sh)`: a failed build must fail here, not import nothing and say it did.
	@archives="$$(tools/node/images.sh)" && [ -n "$$archives" ] && for archive in $$archives; do \
		$(NODE_CTR) images import "$$archive" >/dev/null || exit 1; done
	@echo "images imported: localhost/im2txt/im2txt-operator:0.1.0 localhost/im2txt/im2txt-trainer:0.1.0"

cluster-deploy: $(STAMP)  ## make deploy on the one-node cluster with the local images
	@# The UFile stand-in listens on the node's address, 100.89.0.1: bucket 100 + suffix .89.0.1 (tests/node).
	@# It serves plain HTTP there (the pods have no way to trust a test CA): the admin's documented opt-in.
	$(MAKE) deploy KUBECONFIG=$(NODE_KUBECONFIG) KUBECTL=$(abspath $(VENV))/bin/kubectl IMAGE_REGISTRY=localhost/im2txt \
		UFILE_DOMAINS=.89.0.1 UFILE_INSECURE_HTTP=1
