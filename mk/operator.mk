# Operator part: run it against the current kubeconfig, preview the Jobs of an example, benchmark it.
.PHONY: run render from-uai bench-operator

OPERATOR_ENV := PYTHONPATH=operator:standins
RENDER_EXAMPLE ?= tests/operator/data/training-ufile.yaml

run: $(STAMP)  ## run the operator against the current kubeconfig, all namespaces
	$(OPERATOR_ENV) $(PY) -m im2txt_operator run --all-namespaces

render: $(STAMP)  ## print the Jobs an Im2txtTraining makes (RENDER_EXAMPLE=file.yaml), offline
	$(OPERATOR_ENV) $(PY) -m im2txt_operator render $(RENDER_EXAMPLE)

from-uai: $(STAMP)  ## print the Im2txtTraining for UAI Train job(s): UAI="job.json" or UAI='--cmd "/data/train.py ..." ...'
	@$(OPERATOR_ENV) $(PY) -m im2txt_operator from-uai $(UAI)

bench-operator: $(STAMP)  ## operator vs a raw-watch reactor on the real API server: N=100/1000 (BENCH_OPERATOR_ARGS="--n 5000")
	assets="$$(tools/envtest/build.sh $(VENV))" && KUBEBUILDER_ASSETS="$$assets" $(PY) bench/operator.py $(BENCH_OPERATOR_ARGS)

BENCH_TARGETS += bench-operator
