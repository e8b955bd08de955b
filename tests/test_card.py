"""One model card for every kind of model: a trained run, the authors' converted ones, digits."""

import ast
import json
import re
from html import escape
from pathlib import Path

from huggingface_hub import ModelCard
from markdown_it import MarkdownIt

from fader.authors.conversion import origin_note
from fader.card import model_card, with_model_id
from fader.model import FaderConfig, FaderNetwork
from train.release_digits import card_appendix, digits_card

DIGITS = Path(__file__).resolve().parents[1] / "assets" / "models" / "digits"
# The commands the shipped digits model was made with (its card says how to reproduce it).
CLASSIFIER = "python -m train.classifier --data mnist5k --image-size 32 --no-flip --epochs 30"
DIGITS_COMMANDS = [  # as the shipped card's Reproduce section gives them
    f"{CLASSIFIER} --out runs/digits-classifier",
    f"{CLASSIFIER} --seed 1 --out runs/digits-classifier-b",
    f"{CLASSIFIER} --seed 2 --width 48 --out runs/digits-classifier-c",
    "python -m train --data mnist5k --attrs Digit=zero,one,two,three,four,five,six,seven,eight,"
    "nine --preset tiny --init-fm 32 --max-fm 256 --batch-size 32 --lr 1e-3 --no-flip "
    "--lambda-dis 0.003 --lambda-schedule 4000 --n-clf-dis 1 --lambda-clf-dis 0.05 "
    "--clf-dis-reload runs/digits-classifier-b --classifier runs/digits-classifier --steps 8000 "
    "--eval-every 1000 --eval-images 512 --out runs/digits-h",
]
DIGITS_RELEASE = (
    "python -m train.release_digits --run runs/digits-h --out assets/models/digits "
    "--examples assets/examples/digits --second-judge runs/digits-classifier-c "
    "--tried bench/results/digits_runs_cpu.json"
)
DIGITS_TRIED = DIGITS.parents[2] / "bench" / "results" / "digits_runs_cpu.json"
DIGITS_MINUTES = 33  # the run's train.log, first line to last


def test_a_trained_runs_card_has_hub_metadata_metrics_and_settings():
    config = FaderConfig(
        ["Smiling", "Male"],
        training={"layout": "celeba", "lr": 0.0002, "steps_done": 150},
        metrics={"swap_accuracy": 0.8125, "reconstruction_mse": 0.0421, "psnr": 19.5},
    )
    card = ModelCard(model_card(config, "runs/smile", "sample_grid.png"))
    meta = card.data.to_dict()
    assert meta["library_name"] == "fader" and meta["license"] == "mit"
    assert meta["datasets"] == ["celeba"] and meta["pipeline_tag"] == "image-to-image"
    assert {"fader-networks", "image-to-image", "arxiv:1706.00409"} <= set(meta["tags"])
    text = card.text
    assert "- `Smiling`\n- `Male`" in text and "non-commercial research only" in text
    assert "![Samples: original, reconstruction, each attribute flipped](sample_grid.png)" in text
    rows = [line for line in text.splitlines() if line.endswith(("0.0421 |", "0.8125 |"))]
    assert rows == [
        "| Reconstruction MSE (held-out, [-1, 1] scale) | 0.0421 |",
        "| **Swap accuracy**: edits the classifier reads as asked (α = 0 / 1) | 0.8125 |",
    ], "labelled, in the labels' order"
    assert "| `lr` | `0.0002` |" in text and "| `steps_done` | `150` |" in text
    assert 'FaderNetwork.from_pretrained("runs/smile")' in text
    assert "python app.py --model runs/smile" in text
    assert "α = -2 to 3" in text


def test_a_card_without_metrics_or_grid_says_so_and_links_only_what_exists():
    card = model_card(FaderConfig(["day", "night"], training={"layout": "folders"}))
    meta = ModelCard(card).data.to_dict()
    assert "datasets" not in meta, "the user's own data is not a Hub dataset"
    assert "(not evaluated yet)" in card and "![" not in card
    assert "fader-networks/fader" not in card, "not this project's address"
    links = [part.split(")")[0] for part in card.split("](")[1:]]
    assert links == ["https://arxiv.org/abs/1706.00409"]


def test_a_converted_models_card_names_its_origin_and_licence():
    config = FaderConfig(
        ["Young"],
        slider_range=(-9.0, 10.0),
        training={"converted_from": "y.pth", "license": "cc-by-nc-4.0"},
    )
    card = ModelCard(model_card(config, "m", datasets=["celeba"], origin=origin_note(config)))
    assert card.data.license == "cc-by-nc-4.0" and card.data.datasets == ["celeba"]
    assert "https://dl.fbaipublicfiles.com/FaderNetworks/young.pth" in card.text
    assert "https://github.com/facebookresearch/FaderNetworks" in card.text
    assert "non-commercial use\nonly" in card.text and "`y.pth`" in card.text
    assert "α = -9 to 10" in card.text


def test_the_shipped_digits_card_is_what_the_card_builder_renders_from_its_config():
    config = FaderConfig(**json.loads((DIGITS / "config.json").read_text()))
    tried = json.loads(DIGITS_TRIED.read_text())["runs"]
    appendix = card_appendix(config, DIGITS_COMMANDS, DIGITS_RELEASE, 500, DIGITS_MINUTES, tried)
    rendered = digits_card(config, "assets/models/digits", appendix)
    assert rendered == (DIGITS / "README.md").read_text()

    card = ModelCard(rendered)
    assert card.data.datasets == ["mnist"] and card.data.license == "mit"
    metrics = config.metrics
    assert metrics["swap_accuracy"] >= 0.9 and metrics["swap_accuracy_second_judge"] >= 0.9
    assert metrics["psnr"] >= 20 and metrics["classifier_accuracy"] >= 0.97  # issue 31's bars
    readme = (DIGITS.parents[2] / "README.md").read_text()
    quoted = [metrics["swap_accuracy"], metrics["swap_accuracy_second_judge"]]
    assert all(f"{100 * value:.1f}%" in readme for value in quoted), "the README quotes the card"
    assert f"{metrics['psnr']:.1f} dB" in readme
    assert "| digits-h | one 10-valued attribute | 4 | 0.003 over 4,000 | 0.05 |" in card.text
    assert "![Held-out digits: the original, then decoded as zero … nine](sample_grid.png)" in (
        card.text
    )
    assert "## Reproduce" in card.text and all(c in card.text for c in DIGITS_COMMANDS)


def test_a_pushed_card_names_the_repo_and_keeps_everything_else():
    card = model_card(FaderConfig(["day"]), "runs/day") + "\n## Notes\n\nKept.\n"
    pushed = with_model_id(card, "alice/day")
    assert 'from_pretrained("alice/day")' in pushed and "python app.py --model alice/day" in pushed
    assert "runs/day" not in pushed and pushed.endswith("## Notes\n\nKept.\n")


def test_the_hub_mixins_own_card_links_no_code_address_we_cannot_confirm():
    """`save_pretrained`/`push_to_hub` called directly write the mixin's card instead of ours."""
    card = str(FaderNetwork(FaderConfig(["day"], image_size=32, n_layers=3)).generate_model_card())
    assert "https://arxiv.org/abs/1706.00409" in card
    assert "github.com" not in card


def test_attribute_names_show_as_written_never_as_markdown_or_html():
    """Names come from a dataset's columns: HTML, a table's `|`, a newline or a quote in one
    must show as text in the rendered card and leave its lists, tables and code whole."""
    names = ['say "hi"\n# not a heading', "<script>alert(1)</script>", "a|b", "``tick"]
    config = FaderConfig(
        names,
        training={"layout": "csv", "columns": "a|b\n| forged | row |"},
        metrics={f"latent_discriminator_accuracy/{name}": 0.5 for name in names},
    )
    body = ModelCard(model_card(config)).text
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(body)
    assert "<script>" not in html and html.count("<h1>") == 1
    shown = [escape(" ".join(name.split())) for name in names]
    assert re.search(r"<ul>\n(.*?)</ul>", html, re.S)[1] == "".join(
        f"<li><code>{name}</code></li>\n" for name in shown
    )
    for name in shown:
        assert f"<td>latent_discriminator_accuracy/{name}</td>" in html
    rows = re.findall(r"<tr>(.*?)</tr>", html, re.S)
    assert len(rows) == 2 + len(config.metrics) + len(config.training), "no row forged"
    assert all(row.count("<td>") in (0, 2) for row in rows), "no cell split"
    code = re.search(r"```python\n(.*?)```", body, re.S)[1]
    call = next(
        node
        for node in ast.walk(ast.parse(code))
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "slider_channels"
    )
    assert ast.literal_eval(call.args[0]) == {names[0]: 1.0}, "the example runs as written"
