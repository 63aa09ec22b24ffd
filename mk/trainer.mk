# trainer: the TF2 im2txt port (trainer/im2txt_trainer, /data/train.py in the trainer image)
BENCH_TARGETS += bench-trainer bench-evaluation
TRAINER_IMAGE ?= im2txt-trainer:dev
BENCH_STEPS ?= 3
BENCH_REPLICAS ?= 1,2,4,8
.PHONY: bench-trainer bench-evaluation trainer-image trainer-synthetic

bench-trainer: $(STAMP)  ## trainer: stage 1/2 ex/s vs InceptionV3 floors and eager; MirroredStrategy scaling 1-8 replicas
	BENCH_STEPS=$(BENCH_STEPS) $(PY) bench/trainer_steps.py
	BENCH_STEPS=$(BENCH_STEPS) BENCH_REPLICAS=$(BENCH_REPLICAS) $(PY) bench/trainer_scaling.py

bench-evaluation: $(STAMP)  ## trainer: train.py's s/step alone vs with the evaluation loop beside it (own CPUs, same CPUs)
	$(PY) bench/evaluation_overhead.py

trainer-image:  ## trainer: build the GPU trainer image (needs a Docker engine)
	docker build -f trainer/Dockerfile -t $(TRAINER_IMAGE) .

trainer-synthetic: $(STAMP)  ## trainer: write a tiny synthetic dataset to .demo/synthetic
	PYTHONPATH=trainer $(PY) -m im2txt_trainer.synthetic --out .demo/synthetic
