"""export writes a servable SavedModel whose captions are inference.py's; caption reads it with TensorFlow alone."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import reference_caption_generator as reference_search
import tensorflow as tf
import yaml

from im2txt_trainer import beam_search, caption, checkpoints, evaluate, export, inception, inference
from im2txt_trainer import synthetic as synth
from im2txt_trainer.config import ModelConfig
from im2txt_trainer.model import ShowAndTell
from im2txt_trainer.vocabulary import Vocabulary

ROOT = Path(__file__).resolve().parents[2]
STEP = 7
SIZE = 75
UNITS = 16
VOCAB = 12


@pytest.fixture(scope="module")
def checkpoint(synthetic, tmp_path_factory) -> tuple[Path, Path, list[Path], ShowAndTell]:
    """A train_dir holding model.ckpt-7 written by the trainer's own save code, three JPEGs, and the model saved
    (tests only read it)."""
    out, _ = synthetic
    td = tmp_path_factory.mktemp("export") / "train"
    td.mkdir()
    cfg = ModelConfig.for_image_size(SIZE, vocab_size=VOCAB, embedding_size=UNITS, num_lstm_units=UNITS)
    model = ShowAndTell(cfg, seed=5)
    inception.load_slim_checkpoint(model.encoder, str(out / "inception_v3.ckpt"))
    # Untrained logits are nearly uniform (every image the same captions); larger ones make images differ.
    model.logits_weights.assign(model.logits_weights * 40.0)
    model.global_step.assign(STEP)
    checkpoints.save(str(td), model.named_variables(), STEP)
    images = []
    for i, (colour, shape) in enumerate(synth.CLASSES):
        path = td.parent / f"{colour}-{shape}.jpg"
        path.write_bytes(synth.draw(colour, shape, 80, random.Random(i)))
        images.append(path)
    return td, out / "word_counts.txt", images, model


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory) -> Path:
    td, vocab_file, _, _ = checkpoint
    export_dir = tmp_path_factory.mktemp("served") / "im2txt"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert export.main([f"--checkpoint_path={td}", f"--vocab_file={vocab_file}", f"--export_dir={export_dir}",
                            f"--image_size={SIZE}", f"--eval_file_pattern={vocab_file.parent}/val-*"]) == 0
    assert printed.getvalue() == f"{export_dir / str(STEP)}\n"
    return export_dir


# Runs a script as __main__ in a fresh interpreter, then fails if it imported any im2txt module.
ALONE = """
import runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
    code = 0
except SystemExit as e:
    code = e.code
imported = sorted(m for m in sys.modules if m.startswith("im2txt"))
sys.exit(f"imported {imported}" if imported else code)
"""


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(str(exported / str(STEP)))


def inference_output(checkpoint, capsys) -> str:
    td, vocab_file, images, _ = checkpoint
    assert inference.main([f"--checkpoint_path={td}", f"--vocab_file={vocab_file}", f"--image_size={SIZE}",
                           "--input_files=" + ",".join(map(str, images))]) == 0
    return capsys.readouterr().out


def parse(text: str) -> list[tuple[str, list[tuple[str, float]]]]:
    """inference.py's lines -> [(file name, [(caption, p), ...])]."""
    out: list[tuple[str, list[tuple[str, float]]]] = []
    for line in text.splitlines():
        if m := re.fullmatch(r"Captions for image (.*):", line):
            out.append((m.group(1), []))
        else:
            m = re.fullmatch(r"  (\d+)\) (.*) \(p=(\d+\.\d{6})\)", line)
            assert m and int(m.group(1)) == len(out[-1][1]), line
            out[-1][1].append((m.group(2), float(m.group(3))))
    return out


@pytest.mark.slow
def test_export_is_a_versioned_savedmodel_with_its_vocabulary(exported, loaded, checkpoint):
    _, vocab_file, _, _ = checkpoint
    assert sorted(os.listdir(exported)) == [str(STEP)]  # no .tmp- folder left for a server to trip over
    version = exported / str(STEP)
    assert (version / "saved_model.pb").is_file() and (version / "variables").is_dir()
    assert (version / "assets" / "word_counts.txt").read_text() == vocab_file.read_text()
    assert sorted(loaded.signatures) == ["inference_step", "initial_state", "serving_default"]
    serve = loaded.signatures["serving_default"]
    assert serve.structured_input_signature[1] == {"image_feed": tf.TensorSpec([None], tf.string, "image_feed")}
    assert {k: (s.dtype, s.shape.as_list()) for k, s in serve.structured_outputs.items()} == {
        "caption": (tf.string, [None]), "log_prob": (tf.float64, [None]),
        "captions": (tf.string, [None, 3]), "log_probs": (tf.float64, [None, 3]), "num_captions": (tf.int32, [None])}
    init = loaded.signatures["initial_state"]
    assert init.structured_input_signature[1] == {"image_feed": tf.TensorSpec([None], tf.string, "image_feed")}
    assert init.structured_outputs["initial_state"].shape.as_list() == [None, 2 * UNITS]
    step = loaded.signatures["inference_step"]
    assert step.structured_input_signature[1] == {
        "input_feed": tf.TensorSpec([None], tf.int64, "input_feed"),
        "state_feed": tf.TensorSpec([None, 2 * UNITS], tf.float32, "state_feed")}
    assert {k: s.shape.as_list() for k, s in step.structured_outputs.items()} == {
        "softmax": [None, VOCAB], "state": [None, 2 * UNITS]}
    # An empty request gets an empty answer, not an error.
    empty = serve(image_feed=tf.constant([], tf.string))
    assert empty["captions"].shape == (0, 3) and empty["num_captions"].shape == (0,)


@pytest.mark.slow
def test_savedmodel_captions_are_inference_captions(exported, loaded, checkpoint, capsys):
    """The caption CLI, run as a plain script that imports no trainer module, prints inference.py's
    captions for the same checkpoint and images; serving_default's best caption is the first of them."""
    _, _, images, _ = checkpoint
    expected = parse(inference_output(checkpoint, capsys))
    out = subprocess.run([sys.executable, "-I", "-c", ALONE, str(ROOT / "trainer" / "im2txt_trainer" / "caption.py"),
                          f"--saved_model={exported}", *map(str, images)],
                         capture_output=True, text=True, timeout=300, cwd="/")
    assert out.returncode == 0, out.stderr[-3000:]
    got = parse(out.stdout)
    assert [name for name, _ in got] == [p.name for p in images]
    assert [[c for c, _ in caps] for _, caps in got] == [[c for c, _ in caps] for _, caps in expected]
    # The same words have the same probabilities; only float rounding (batch shapes) may move the last digit.
    for (_, caps), (_, want) in zip(got, expected, strict=True):
        np.testing.assert_allclose([p for _, p in caps], [p for _, p in want], atol=1.5e-6)
    # Each image gets its own captions, so mixing up images would show.
    assert len({tuple(c for c, _ in caps) for _, caps in expected}) == len(images)

    serve = loaded.signatures["serving_default"]
    res = serve(image_feed=tf.constant([p.read_bytes() for p in images]))
    assert [c.decode() for c in res["caption"].numpy()] == [caps[0][0] for _, caps in expected]
    np.testing.assert_allclose(np.exp(res["log_prob"].numpy()), [caps[0][1] for _, caps in expected], atol=1.5e-6)
    assert res["num_captions"].numpy().tolist() == [len(caps) for _, caps in expected]


class StepSignatures:
    """A model's search interface (initial state, step) on top of the SavedModel's step signature."""

    def __init__(self, loaded) -> None:
        self.step = loaded.signatures["inference_step"]

    def inference_initial_state(self, images):
        raise AssertionError("the search starts from the initial_state signature")

    def inference_step(self, input_feed, state):
        out = self.step(input_feed=tf.cast(input_feed, tf.int64), state_feed=state)
        return out["softmax"], out["state"]


@pytest.mark.slow
def test_step_signatures_reproduce_the_reference_steps(loaded, checkpoint):
    """initial_state and inference_step equal the model's own functions; inference.py's search run by a client
    over them finds the reference search's captions on the model."""
    _, vocab_file, images, model = checkpoint
    vocab = Vocabulary.load(str(vocab_file))
    pixels = np.stack([inference.load_image(str(p), model.cfg) for p in images])

    state = loaded.signatures["initial_state"](image_feed=tf.constant([p.read_bytes() for p in images]))
    state = state["initial_state"].numpy()
    expected_state = model.inference_initial_state(pixels).numpy()
    np.testing.assert_allclose(state, expected_state, rtol=1e-5, atol=1e-6)

    # The first beam step: <S> from each image's state -> the same distribution, top words and next state.
    feed = np.full([len(images)], vocab.start_id, np.int64)
    out = loaded.signatures["inference_step"](input_feed=feed, state_feed=state)
    probs, new_state = model.inference_step(feed, state)
    np.testing.assert_allclose(out["softmax"].numpy(), probs.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out["state"].numpy(), new_state.numpy(), rtol=1e-5, atol=1e-6)
    top = np.argsort(-out["softmax"].numpy(), axis=1, kind="stable")[:, :3]
    assert top.tolist() == np.argsort(-probs.numpy(), axis=1, kind="stable")[:, :3].tolist()

    client = inference.CaptionGenerator(StepSignatures(loaded), vocab)
    reference = reference_search.CaptionGenerator(model, vocab)
    for got, want in zip(client.beam_search(state), expected_state, strict=True):
        expected = reference.beam_search(want)
        assert [c.sentence for c in got] == [c.sentence for c in expected]
        np.testing.assert_allclose([c.logprob for c in got], [c.logprob for c in expected], rtol=1e-6)


@pytest.fixture
def scratch_model(checkpoint):
    """The checkpoint's model with caption weights a test may overwrite; they are put back afterwards."""
    model = checkpoint[3]
    saved = [v.numpy() for v in model.caption_variables()]
    yield model
    for v, value in zip(model.caption_variables(), saved, strict=True):
        v.assign(value)


# Word distributions that drive the search into each of the reference's rules: (logit scale, </S> logit bias,
# beam size). Near-uniform words run to the length limit; peaky ones fall below 1e-12; a very negative </S>
# bias never completes a caption (the partial ones are returned); a positive one completes early.
SEARCHES = [(1.0, 0.0, 3), (8.0, 0.0, 3), (8.0, -3.0, 3), (30.0, -2.0, 3), (8.0, -40.0, 3), (8.0, 2.0, 2),
            (30.0, 0.0, 4), (400.0, 0.0, 3)]


@pytest.mark.slow
def test_graph_beam_search_follows_the_reference_rules(scratch_model):
    """The one search (beam_search.py), as the SavedModel runs it (text) and as inference.py runs it (ids), equals
    the reference's caption_generator on the same states, across word distributions that exercise every rule,
    and those rules are seen to fire."""
    model = scratch_model
    # 8 words (9 with the <UNK> it adds) for a 12-word model: ids 9-11 read as <UNK>.
    vocab = Vocabulary(["<S>", "a", "</S>", "red", "circle", "on", "the", "grass"])
    rng = np.random.default_rng(0)
    seen = {"complete": 0, "partial": 0, "fewer": 0, "unk": 0, "start_inside": 0, "full_length": 0, "tiny_p": 0}
    smallest: list[float] = []
    searches = {}  # per beam size, traced once: the weights below are variables
    for beam in sorted({b for _, _, b in SEARCHES}):
        reference = reference_search.CaptionGenerator(model, vocab, beam, 20)
        step = reference._step

        def recording(feed, state, step=step, beam=beam):
            probs, new = step(feed, state)
            smallest.append(float(np.sort(probs.numpy(), axis=1)[:, -beam:].min()))
            return probs, new

        reference._step = recording
        searches[beam] = (tf.function(export.CaptionModule(model, vocab, beam, 20).beam_search),
                          inference.CaptionGenerator(model, vocab, beam, 20), reference)
    for scale, end_bias, beam in SEARCHES:
        for v in model.caption_variables():
            v.assign(rng.uniform(-0.5, 0.5, v.shape).astype(np.float32))
        model.logits_weights.assign(model.logits_weights * scale)
        model.logits_biases.assign(np.where(np.arange(VOCAB) == vocab.end_id, end_bias, 0.0).astype(np.float32))
        states = rng.normal(0.0, 1.0, (5, 2 * UNITS)).astype(np.float32)
        search, generator, reference = searches[beam]
        # float32: a caption's log-probability sums up to 20 steps' log-softmax, each rounded to about 1e-7 of logits
        # that grow with the scale, and a batch of 5 states multiplies in another order than one state does (seen on
        # one machine, every run: 6e-6 at scale 30, -2.41750 against -2.41751).
        rounding = 2e-5 + scale * 1e-7
        out = search(tf.constant(states))
        found = generator.beam_search(states)
        smallest.clear()
        for i, s in enumerate(states):
            expected = reference.beam_search(s)
            assert [c.sentence for c in found[i]] == [c.sentence for c in expected], (scale, end_bias)
            np.testing.assert_allclose([c.logprob for c in found[i]], [c.logprob for c in expected], rtol=1e-6,
                                       atol=rounding)
            n = int(out["num_captions"][i])
            assert [c.decode() for c in out["captions"][i].numpy()[:n]] == [vocab.sentence(c.sentence)
                                                                            for c in expected], (scale, end_bias)
            np.testing.assert_allclose(out["log_probs"][i].numpy()[:n], [c.logprob for c in expected], rtol=1e-6,
                                       atol=rounding)
            assert out["captions"][i].numpy()[n:].tolist() == [b""] * (beam - n)
            assert np.all(out["log_probs"][i].numpy()[n:] == -np.inf)
            ended = expected[0].sentence[-1] == vocab.end_id
            seen["complete"] += ended
            seen["partial"] += not ended
            seen["fewer"] += len(expected) < beam
            seen["unk"] += any("<UNK>" in vocab.sentence(c.sentence) for c in expected)
            seen["start_inside"] += any(vocab.start_id in c.sentence[1:] for c in expected)
            seen["full_length"] += any(len(c.sentence) == 20 for c in expected)
        seen["tiny_p"] += min(smallest) < beam_search.MIN_PROBABILITY
    assert all(seen.values()), seen


def test_export_errors_are_named(tmp_path, capsys):
    (tmp_path / "word_counts.txt").write_text("<S> 3\n</S> 3\na 3\n")
    vocab = f"--vocab_file={tmp_path}/word_counts.txt"
    assert export.main([f"--checkpoint_path={tmp_path}", vocab, f"--export_dir={tmp_path}/e"]) == 1
    assert "no model.ckpt-N checkpoint" in capsys.readouterr().err
    assert export.main([f"--checkpoint_path={tmp_path}", f"--vocab_file={tmp_path}/none.txt",
                        f"--export_dir={tmp_path}/e"]) == 1
    assert "vocabulary file not found" in capsys.readouterr().err
    assert export.main([f"--checkpoint_path={tmp_path}", vocab, f"--export_dir={tmp_path}/e", "--beam_size=0"]) == 1
    assert "--beam_size must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


@pytest.mark.slow
def test_the_version_records_its_checkpoints_validation_figures(exported, checkpoint, tmp_path, capsys):
    td, vocab_file, _, _ = checkpoint
    record = json.loads((exported / str(STEP) / export.EVALUATION_FILE).read_text())
    val = sorted(str(p) for p in vocab_file.parent.glob("val-*"))
    expected = evaluate.perplexity(inference.load_model(str(td / f"model.ckpt-{STEP}"), SIZE), val)
    assert record == {"global_step": STEP, "input_file_pattern": f"{vocab_file.parent}/val-*", **expected}
    # No validation records: the model is exported all the same, and the record says why there is no figure.
    assert export.main([f"--checkpoint_path={td}", f"--vocab_file={vocab_file}", f"--export_dir={tmp_path}",
                        f"--image_size={SIZE}", f"--eval_file_pattern={tmp_path}/val-?????-of-00004"]) == 0
    assert capsys.readouterr().out == f"{tmp_path / str(STEP)}\n"
    record = json.loads((tmp_path / str(STEP) / export.EVALUATION_FILE).read_text())
    assert record["global_step"] == STEP and "no files match" in record["error"] and "perplexity" not in record


@pytest.mark.slow
def test_an_existing_version_is_never_overwritten(exported, checkpoint, capsys):
    td, vocab_file, _, _ = checkpoint
    before = (exported / str(STEP) / "saved_model.pb").stat().st_mtime_ns
    assert export.main([f"--checkpoint_path={td}/model.ckpt-{STEP}", f"--vocab_file={vocab_file}",
                        f"--export_dir={exported}"]) == 1
    assert f"{exported / str(STEP)} exists already" in capsys.readouterr().err
    assert (exported / str(STEP) / "saved_model.pb").stat().st_mtime_ns == before


def test_caption_names_a_missing_savedmodel(tmp_path, capsys):
    (tmp_path / "3").mkdir()  # a version folder without saved_model.pb does not count
    assert caption.main([f"--saved_model={tmp_path}", "a.jpg"]) == 1
    assert f"no SavedModel in {str(tmp_path)!r}" in capsys.readouterr().err


def test_caption_names_an_image_it_cannot_decode(tmp_path, capsys):
    (tmp_path / "model" / "1").mkdir(parents=True)
    (tmp_path / "model" / "1" / "saved_model.pb").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("not a picture")
    assert caption.main([f"--saved_model={tmp_path / 'model'}", str(tmp_path / "notes.jpg")]) == 1
    assert f"{tmp_path / 'notes.jpg'}: not an image the model can decode" in capsys.readouterr().err
    assert caption.main([f"--saved_model={tmp_path / 'model'}", str(tmp_path / "missing.jpg")]) == 1
    assert f"cannot read {tmp_path / 'missing.jpg'}: No such file or directory" in capsys.readouterr().err


def test_caption_picks_the_highest_version(tmp_path):
    for v in ("2", "10", "9", "tmp"):
        (tmp_path / v).mkdir()
        (tmp_path / v / "saved_model.pb").write_bytes(b"")
    assert caption.saved_model_dir(str(tmp_path)) == str(tmp_path / "10")
    assert caption.saved_model_dir(str(tmp_path / "9")) == str(tmp_path / "9")


# Each abbreviation carries a bad value, so a parser that still expanded it would fail differently.
@pytest.mark.parametrize("main, argv", [
    (export.main, ["--checkpoint_path=c", "--vocab_file=v", "--export_dir=e", "--beam_siz=x"]),
    (caption.main, ["--saved_model=d", "a.jpg", "--saved_mod=x"]),
], ids=["export", "caption"])
def test_export_and_caption_refuse_abbreviated_flags(main, argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert f"unrecognized arguments: {argv[-1]}" in capsys.readouterr().err


def test_inferenceservice_example_serves_the_export_folder():
    """examples/inferenceservice.yaml (no KServe schema here, so its shape): TF Serving via KServe, reading the
    export folder on the claim of examples/training-pvc.yaml, as docs/export.md says."""
    (isvc,) = [d for d in yaml.safe_load_all((ROOT / "examples" / "inferenceservice.yaml").read_text()) if d]
    assert (isvc["apiVersion"], isvc["kind"], isvc["metadata"]["name"]) == (
        "serving.kserve.io/v1beta1", "InferenceService", "im2txt")
    model = isvc["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": "tensorflow"}
    claim, _, folder = model["storageUri"].removeprefix("pvc://").partition("/")
    pvc_docs = [d for d in yaml.safe_load_all((ROOT / "examples" / "training-pvc.yaml").read_text()) if d]
    (training,) = [d for d in pvc_docs if d["kind"] == "Im2txtTraining"]
    assert claim in {d["metadata"]["name"] for d in pvc_docs if d["kind"] == "PersistentVolumeClaim"}
    assert training["spec"]["outputPath"] == f"pvc://{claim}/{folder.rsplit('/', 1)[0]}/output/"
    assert f"--export_dir=/mnt/{folder}" in (ROOT / "examples" / "inferenceservice.yaml").read_text()
    assert model["storageUri"] in (ROOT / "docs" / "export.md").read_text()
