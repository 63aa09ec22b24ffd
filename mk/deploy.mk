# Deploy part: images (docker, podman or buildah), manifests, deploy/undeploy against the cluster of the current kubeconfig.
# Variables: IMAGE_REGISTRY (e.g. registry.example.com/im2txt), TAG, KUBECTL, DOCKER (the image builder: docker,
# podman or buildah, the first found), BUILD_FLAGS (extra flags for it), TENSORFLOW (the trainer's TensorFlow
# package: the GPU build by default, e.g. TENSORFLOW=tensorflow-cpu==2.21.0 for a CPU-only image).
IMAGE_REGISTRY ?= localhost:5000/im2txt
TAG ?= 0.1.0
KUBECTL ?= kubectl
# docker when its engine answers, else podman or buildah (daemonless), whichever is installed; evaluated on use.
DOCKER ?= $(firstword $(shell docker info >/dev/null 2>&1 && echo docker; command -v podman buildah 2>/dev/null) docker)
BUILD_FLAGS ?=
TENSORFLOW ?=
OPERATOR_IMAGE ?= $(IMAGE_REGISTRY)/im2txt-operator:$(TAG)
TRAINER_IMAGE ?= $(IMAGE_REGISTRY)/im2txt-trainer:$(TAG)
DEPLOY_BUILD := build/deploy
RENDERED := build/im2txt-operator.yaml

.PHONY: images images-operator images-trainer push-images manifests deploy undeploy undeploy-crd helm helm-crds \
	helm-lint helm-template

define need_docker
	@command -v $(firstword $(DOCKER)) >/dev/null 2>&1 || { echo "make $@: '$(firstword $(DOCKER))' is not installed; building images needs Docker, Podman or buildah (DOCKER=...)." >&2; exit 1; }
	@$(DOCKER) info >/dev/null 2>&1 || { echo "make $@: cannot reach a container engine with '$(DOCKER) info' (is the Docker daemon running?)." >&2; exit 1; }
endef

define need_kubectl
	@command -v $(KUBECTL) >/dev/null 2>&1 || { echo "make $@: '$(KUBECTL)' is not installed." >&2; exit 1; }
endef

images: images-operator images-trainer  ## build the operator and trainer images (IMAGE_REGISTRY=..., TAG=...)

images-operator:
	$(need_docker)
	$(strip $(DOCKER) build $(BUILD_FLAGS)) -f operator/Dockerfile -t $(OPERATOR_IMAGE) .

images-trainer:
	$(need_docker)
	$(strip $(DOCKER) build $(BUILD_FLAGS) $(if $(TENSORFLOW),--build-arg TENSORFLOW=$(TENSORFLOW))) -f trainer/Dockerfile -t $(TRAINER_IMAGE) .

push-images: images  ## push both images to IMAGE_REGISTRY
	$(DOCKER) push $(OPERATOR_IMAGE)
	$(DOCKER) push $(TRAINER_IMAGE)

manifests: helm-crds  ## refresh generated manifests/docs and render manifests/base to build/im2txt-operator.yaml
	$(need_kubectl)
	$(PY) tools/argocd_cm.py
	$(PY) tools/crd_reference.py
	@mkdir -p $(dir $(RENDERED))
	tools/deploy_overlay.sh $(DEPLOY_BUILD) $(OPERATOR_IMAGE)
	$(KUBECTL) kustomize $(DEPLOY_BUILD) > $(RENDERED)
	@echo "rendered $(RENDERED) (operator image $(OPERATOR_IMAGE))"

deploy:  ## install CRD, RBAC and the operator in the current kubeconfig's cluster (server-side apply)
	$(need_kubectl)
	UFILE_DOMAINS=$(UFILE_DOMAINS) UFILE_INSECURE_HTTP=$(UFILE_INSECURE_HTTP) tools/deploy_overlay.sh $(DEPLOY_BUILD) $(OPERATOR_IMAGE)
	@# Server-side apply: the CRD is too large for client-side apply's last-applied annotation.
	$(KUBECTL) apply --server-side --field-manager=im2txt-deploy -k $(DEPLOY_BUILD)
	@# Not `rollout status` alone: a standby stays Ready while a crash-looping leader does nothing.
	$(PY) tools/deploy_check.py --kubectl=$(KUBECTL) --timeout=180

undeploy:  ## remove the operator and its RBAC; keeps the CRD, every training and all their data
	$(need_kubectl)
	tools/deploy_overlay.sh $(DEPLOY_BUILD) $(OPERATOR_IMAGE) --without-crd
	$(KUBECTL) delete --ignore-not-found -k $(DEPLOY_BUILD)
	@echo "The CRD im2txttrainings.im2txt.dev and all trainings were kept; checkpoints stay in their output paths."
	@echo "WARNING: deleting the CRD (make undeploy-crd CONFIRM=yes) deletes EVERY Im2txtTraining and their Jobs."

undeploy-crd:  ## delete the CRD and with it every training and its Jobs (needs CONFIRM=yes); data in UFile/PVCs stays
	$(need_kubectl)
	@[ "$(CONFIRM)" = "yes" ] || { echo "This deletes EVERY Im2txtTraining in the cluster (and their Jobs). Run: make undeploy-crd CONFIRM=yes" >&2; exit 1; }
	$(KUBECTL) delete --ignore-not-found -f crds/im2txt.dev_im2txttrainings.yaml

# Helm: charts/im2txt-operator installs what manifests/base installs. helm itself is built from its Go module at the
# release pinned in tools/helm/go.mod (cached like tools/envtest); HELM=... uses another helm instead.
CHART := charts/im2txt-operator
HELM_RENDERED := build/helm/im2txt-operator.yaml
HELM ?=
# The helm to run: $(HELM), else the built one (building it first; a failed build stops the recipe).
helm_bin = h="$(or $(HELM),$$(tools/helm/build.sh))"
HELM_VALUES ?=

helm:  ## build helm (tools/helm, the pinned release; cached) and print its path
	@tools/helm/build.sh

helm-crds:  ## refresh the chart's copy of the CRD (charts/im2txt-operator/crds) from crds/
	cp crds/im2txt.dev_im2txttrainings.yaml $(CHART)/crds/

helm-lint:  ## helm lint --strict the chart
	$(helm_bin) && "$$h" lint --strict $(CHART)

helm-template: helm-crds  ## render the chart with the operator image (IMAGE_REGISTRY=..., TAG=...) to build/helm/im2txt-operator.yaml
	@mkdir -p $(dir $(HELM_RENDERED))
	$(helm_bin) && "$$h" template im2txt-operator $(CHART) --namespace im2txt-system --include-crds \
	  --set image.repository=$(IMAGE_REGISTRY)/im2txt-operator --set image.tag=$(TAG) $(HELM_VALUES) > $(HELM_RENDERED)
	@echo "rendered $(HELM_RENDERED) (operator image $(OPERATOR_IMAGE))"
