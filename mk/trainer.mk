# trainer: the TF2 im2txt port (trainer/im2txt_trainer, /data/train.py in the trainer image)
BENCH_TARGETS += bench-trainer
TRAINER_IMAGE ?= im2txt-trainer:dev
BENCH_STEPS ?= 3
.PHONY: bench-trainer trainer-image trainer-synthetic

bench-trainer: $(STAMP)  ## trainer: examples/sec of stage 1/2 vs bare InceptionV3 floors and an eager baseline
	BENCH_STEPS=$(BENCH_STEPS) PYTHONPATH=trainer $(PY) -m im2txt_trainer.bench

trainer-image:  ## trainer: build the GPU trainer image (needs a Docker engine)
	docker build -f trainer/Dockerfile -t $(TRAINER_IMAGE) .

trainer-synthetic: $(STAMP)  ## trainer: write a tiny synthetic dataset to .demo/synthetic
	PYTHONPATH=trainer $(PY) -m im2txt_trainer.synthetic --out .demo/synthetic
