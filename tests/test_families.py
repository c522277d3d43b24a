"""Every Stable Diffusion generation (issue #25): SD 1.x/2.x, SDXL, SD3/3.5 and FLUX, each through its own diffusers
pipeline; the built-in tiny model of each family (random weights, built here, no download) sweeps end to end on
the simulated GPU, whose time and memory per image follow the family (sweepd.families' calibration); the
ML.ENERGY leaderboard's settings as a preset; options a family lacks refused naming the field."""

import json

import pytest

from conftest import measured, sweepd
from sweepd import atomic, configfile, families
from sweepd.configfile import ConfigError
from sweepd.families import Family
from sweepd.gpu.simmodel import gib_fixed, gib_per_image, s_per_image
from sweepd.request import SweepRequest


def req_text(model: str, extra: str = "", workload: str = "steps = 2\nwidth = 64\nheight = 64\n") -> str:
    return f"""job_id = "{model.replace('-', '_').replace('/', '_').replace('.', '_')}"
[workload]
model = "{model}"
prompt = "a lighthouse at dusk"
{workload}{extra}
[gpu]
backend = "sim"
sim_model = "H100"
[frequencies]
mode = "custom"
list = [1785, 1320, 900]
[protocol]
trials = 2
min_window_s = 0.2
settle_s = 0
[images]
mode = "research"
"""


@pytest.mark.parametrize("model, family", [
    ("tiny", Family.SD), ("tiny-sdxl", Family.SDXL), ("tiny-sd3", Family.SD3), ("tiny-flux", Family.FLUX),
    ("runwayml/stable-diffusion-v1-5", Family.SD), ("stabilityai/stable-diffusion-2-1", Family.SD),
    ("stabilityai/stable-diffusion-xl-base-1.0", Family.SDXL), ("stabilityai/stable-diffusion-3.5-medium", Family.SD3),
    ("stabilityai/stable-diffusion-3-medium-diffusers", Family.SD3), ("black-forest-labs/FLUX.1-dev", Family.FLUX),
    ("prompthero/openjourney-v4", Family.SD), ("someone/unknown-model", None)])
def test_a_models_family_is_told_from_its_name_without_loading_it(model, family):
    assert families.of_model(model) == family


def test_a_local_folders_family_is_what_its_model_index_names(tmp_path):
    for cls, family in (("StableDiffusionXLPipeline", Family.SDXL), ("FluxPipeline", Family.FLUX),
                        ("KandinskyPipeline", None)):
        (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": cls}))
        assert families.of_model(str(tmp_path)) == family
    (tmp_path / "model_index.json").write_text("not json")
    assert families.of_model(str(tmp_path)) is None


def test_the_simulated_gpu_times_and_sizes_each_family_by_its_work():
    """A tiny model stands in for its family at the family's native resolution, as tiny does for SD at 512x512."""
    sd = s_per_image("H100", "tiny", 28, 64, 64)
    for name, family in (("tiny-sdxl", Family.SDXL), ("tiny-sd3", Family.SD3), ("tiny-flux", Family.FLUX)):
        info = families.FAMILIES[family]
        assert s_per_image("H100", name, 28, 64, 64) == pytest.approx(sd * info.step_work)
        assert gib_per_image(name, 64, 64) == info.gib_per_image_native and gib_fixed(name) == info.weights_gib
    assert families.FAMILIES[Family.SDXL].step_work == pytest.approx(2.26 / 0.87, abs=0.01)  # the leaderboard
    # a hub model at half its family's resolution: a quarter of the pixels, a quarter of the work
    xl = "stabilityai/stable-diffusion-xl-base-1.0"
    assert s_per_image("A100", xl, 25, 512, 512) == pytest.approx(s_per_image("A100", xl, 25, 1024, 1024) / 4)
    assert s_per_image("A100", "someone/sd", 50, 512, 512) == s_per_image("A100", "tiny", 50, 512, 512)  # SD as before


def test_a_family_that_cannot_fit_the_board_is_refused_before_the_model_loads(tmp_path):
    r = tmp_path / "flux.toml"
    r.write_text(req_text("tiny-flux").replace('sim_model = "H100"', 'sim_model = "V100"')
                 .replace("list = [1785, 1320, 900]", "list = [1380, 1200]"))
    out = sweepd("run", r, "--root", tmp_path / "root")
    assert out.returncode == 2 and "GiB of GPU memory" in out.stderr and "33.0 GiB for the model" in out.stderr, \
        out.stderr
    assert not (tmp_path / "root" / "results" / "job_tiny_flux").exists()


def test_an_option_the_family_lacks_is_refused_naming_the_field(tmp_path):
    for model, extra, words in (("tiny-flux", 'scheduler = "ddim"', "flow matching"),
                                ("tiny-sd3", 'scheduler = "dpmpp_2m"', "flow matching"),
                                ("tiny-flux", 'negative_prompt = "blurry"', "no negative prompt")):
        path = tmp_path / "r.toml"
        path.write_text(req_text(model, extra))
        with pytest.raises(ConfigError) as e:
            configfile.load(SweepRequest, path)
        assert str(path) in str(e.value) and words in str(e.value), str(e.value)
    path.write_text(req_text("tiny-sdxl", 'scheduler = "dpmpp_2m"\nnegative_prompt = "blurry"'))
    assert configfile.load(SweepRequest, path).workload.scheduler == "dpmpp_2m"  # SDXL has both


def test_an_uncached_hub_id_offline_is_one_line_naming_its_family_before_anything_is_made(tmp_path, monkeypatch):
    from conftest import sweepd_env

    for model, title in (("stabilityai/stable-diffusion-xl-base-1.0", "SDXL"),
                         ("stabilityai/stable-diffusion-3.5-medium", "SD3/SD3.5"),
                         ("black-forest-labs/FLUX.1-schnell", "FLUX.1")):
        path = tmp_path / "r.toml"
        path.write_text(req_text(model))
        r = sweepd("run", path, "--root", tmp_path / "root",
                   env=sweepd_env(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hub")))
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and not r.stdout.strip(), r.stderr
        assert f"{title} by its name, not in the Hugging Face cache" in r.stderr and "Traceback" not in r.stderr
        assert not (tmp_path / "root").exists()


def test_the_leaderboard_preset_sets_the_familys_settings_and_the_request_wins_where_it_says(tmp_path):
    w = SweepRequest.model_validate({"workload": {"model": "tiny-sd3", "preset": "mlenergy-v3"}}).workload
    assert (w.width, w.height, w.steps, w.batch_size) == (1024, 1024, 28, [1, 2, 4, 8, 16])
    w = SweepRequest.model_validate({"workload": {"model": "tiny-flux", "preset": "mlenergy-v3", "steps": 4}}).workload
    assert (w.width, w.steps) == (1024, 4)  # FLUX's 50 steps, but the request says 4
    w = SweepRequest.model_validate({"workload": {"model": "tiny-sdxl", "preset": "mlenergy-v2"}}).workload
    assert (w.width, w.steps) == (1024, 25)
    path = tmp_path / "r.toml"
    path.write_text('[workload]\nmodel = "tiny-sdxl"\npreset = "mlenergy-v3"\n')
    with pytest.raises(ConfigError) as e:
        configfile.load(SweepRequest, path)
    assert "mlenergy-v3" in str(e.value) and "SDXL" in str(e.value) and str(path) in str(e.value)
    # a preset left at its default keeps every earlier request's fingerprint
    assert "preset" not in json.dumps(SweepRequest().fingerprint())
    path.write_text(req_text("tiny-sd3", workload='preset = "mlenergy-v3"\n'))
    r = sweepd("estimate", path, "--root", tmp_path / "root")
    assert r.returncode == 0 and "tiny-sd3 (SD3/SD3.5), 1024 x 1024, 28 steps" in r.stdout, r.stdout + r.stderr
    assert "preset mlenergy-v3" in r.stdout


@pytest.mark.slow
@pytest.mark.parametrize("model", ["tiny-sdxl", "tiny-sd3", "tiny-flux"])
def test_each_tiny_family_sweeps_end_to_end_on_the_simulated_gpu(tmp_path, model):
    path = tmp_path / "r.toml"
    path.write_text(req_text(model))
    r = sweepd("run", path, "--root", tmp_path / "root")  # in this process: torch is imported once
    assert r.returncode == 0, r.stdout + r.stderr
    d = tmp_path / "root" / "results" / f"job_{model.replace('-', '_')}"
    trials = atomic.read_csv(d / "trials.csv")
    assert {t["freq_mhz"] for t in measured(trials)} == {"1785", "1320", "900"}
    m = json.loads((d / "sweep.json").read_text())
    pipeline = families.FAMILIES[families.TINY[model]].pipelines[0]
    assert m["workload"]["model"] == model and m["workload"]["scheduler"]  # loaded through its family's pipeline
    assert json.loads((__import__("pathlib").Path(m["workload"]["model_path"]) / "model_index.json").read_text())[
        "_class_name"] == pipeline
    images = atomic.read_csv(d / "images.csv")
    assert images and all(i["psnr_vs_ref"] for i in images)  # each image against the reference
    saved = [i for i in images if i["saved_path"]]
    assert saved and {i["freq_mhz"] for i in saved} < {"1785", "1320", "900"}  # research: some clocks
    # the board was timed as the family at its native resolution, not as the 64 x 64 the CPU rendered
    s = float(measured(trials)[0]["s_per_image"])
    assert s == pytest.approx(s_per_image("H100", model, 2, 64, 64), rel=0.5)
    assert "SIMULATED" in (d / "report.html").read_text()


def _blank(tmp_path, workload: dict, monkeypatch) -> str:
    from sweepd.engine import runner
    from sweepd.paths import Layout
    from sweepd.report.analysis import analyse
    from sweepd.report.data import load
    from sweepd.report.leaderboard import line

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # a hub id is checked, never downloaded: nothing loads
    req = SweepRequest.model_validate({
        "workload": workload, "gpu": {"backend": "sim", "sim_model": "H100", "sim_noise": "none"},
        "frequencies": {"mode": "custom", "list": [1785, 1320, 900]},
        "protocol": {"trials": 2, "min_window_s": 0.2, "settle_s": 0, "warmup": 0}, "images": {"mode": "benchmark"}})
    store = runner.run_blank(req, Layout.resolve(tmp_path), "lb")
    return line(analyse(load(store.dir)))


def test_the_report_puts_the_sweep_next_to_the_leaderboard_and_says_what_differs(tmp_path, monkeypatch):
    text = _blank(tmp_path / "a", {"model": "tiny-sd3", "preset": "mlenergy-v3", "width": 64, "height": 64,
                                   "steps": 2, "batch_size": 1}, monkeypatch)
    assert text.startswith("ML.ENERGY mlenergy-v3 (2025-12) H100 stabilityai/stable-diffusion-3.5-medium: 1581 "
                           "J/image, 3.53 s/image (batch 1, 28 steps, 1024x1024, default clock); here at 1785 MHz")
    assert "differs: model (tiny-sd3 here" in text and "steps (2 here, 28 there)" in text
    assert "resolution (64x64 here, 1024x1024 there)" in text and "(simulated) here, H100 there" in text
    # the very model and settings the leaderboard ran: only the (simulated) GPU differs
    xl = _blank(tmp_path / "b", {"model": "stabilityai/stable-diffusion-xl-base-1.0", "steps": 25, "width": 1024,
                                 "height": 1024}, monkeypatch)
    assert "969 J/image, 2.26 s/image" in xl and xl.endswith("differs: GPU (NVIDIA H100 NVL (simulated) here, "
                                                             "H100 there)"), xl
    # neither asked for nor a model the leaderboard ran: no line; a preset without a published figure says so
    assert _blank(tmp_path / "c", {"model": "tiny", "width": 32, "height": 32, "steps": 2}, monkeypatch) is None
    flux = _blank(tmp_path / "d", {"model": "tiny-flux", "preset": "mlenergy-v3", "width": 64, "height": 64,
                                   "steps": 2, "batch_size": 1}, monkeypatch)
    assert flux.startswith("ML.ENERGY mlenergy-v3: no published FLUX.1 figure in sweepd's data")


def test_sweepd_gpus_says_how_large_a_batch_of_each_family_fits(tmp_path):
    r = sweepd("gpus", "--backend", "sim", "--json", "--root", tmp_path)
    a100, h100, v100 = json.loads(r.stdout)
    assert a100["largest_batch"] == {"sd": 33, "sdxl": 7, "sd3": 5, "flux": 1}  # 40 GB: FLUX's 33 GiB of weights
    assert v100["largest_batch"]["flux"] == 0 and v100["largest_batch"]["sd"] > 0
    text = sweepd("gpus", "--backend", "sim", "--root", tmp_path).stdout
    assert "FLUX.1 none (its 33 GiB of weights do not fit)" in text
