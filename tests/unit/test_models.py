"""Registry and architectures: names, output shapes, and parameter counts worked out from each layer list."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mnist_pipeline import architectures, models
from mnist_pipeline.errors import PipelineError
from mnist_pipeline.models import MODELS, build_model, count_parameters

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
ARCHITECTURES = ROOT / "src" / "mnist_pipeline" / "architectures"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_parameter_count_matches_the_cards_layer_list(name: str) -> None:
    # each card's count is worked out from the layer list (weights + biases; BatchNorm: 2 per channel)
    assert count_parameters(build_model(name)) == MODELS[name].parameters


def test_readme_models_table_states_each_count() -> None:
    """The README's Models table: one row per registered model with its true parameter count."""
    section = (
        README.read_text().split("\n## Models\n", 1)[1].split("\n## ", 1)[0]
    )  # other tables end in numbers too
    rows = re.findall(r"^\| `(\w+)` \|.*\| ([\d,]+) \|$", section, flags=re.MULTILINE)
    stated = {name: int(count.replace(",", "")) for name, count in rows}
    assert stated == {name: count_parameters(build_model(name)) for name in MODELS}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_maps_a_batch_to_ten_logits(name: str) -> None:
    model = build_model(name).eval()
    with torch.inference_mode():
        assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_seed_layer_shapes() -> None:
    lenet, cnn2, cnn6 = build_model("lenet"), build_model("cnn2"), build_model("cnn6")
    assert lenet.fc1.in_features == 48 * 5 * 5 and lenet.conv1.kernel_size == (3, 3)
    assert cnn2.fc1.in_features == 1600 and cnn2.fc1.out_features == 64
    assert [m.out_channels for m in cnn6.modules() if isinstance(m, torch.nn.Conv2d)] == [
        16,
        16,
        32,
        32,
        64,
        64,
    ]
    resnet = build_model("resnet18")
    assert resnet.conv1.in_channels == 1 and resnet.conv1.stride == (2, 2) and resnet.fc.out_features == 10


def leaf_types(module: torch.nn.Module) -> list[type[torch.nn.Module]]:
    """The types of the modules without children, in the order the model runs them."""
    return [type(m) for m in module.modules() if not list(m.children())]


def test_cnn6_is_the_seed_architecture_layer_by_layer() -> None:
    # a lost ReLU or a padding of 2 keeps the 7x7 output and the parameter count: only the layer list tells
    nn = torch.nn
    cnn6 = build_model("cnn6")
    conv, pool = [nn.Conv2d, nn.ReLU], [nn.MaxPool2d]
    assert leaf_types(cnn6) == conv + pool + conv * 3 + pool + conv * 2 + [nn.Linear]
    convs = [m for m in cnn6.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 6
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) and c.stride == (1, 1) for c in convs)


def test_bnnet_blocks_are_conv_batchnorm_relu() -> None:
    nn = torch.nn
    features = build_model("bnnet").features
    blocks = [m for m in features.children() if isinstance(m, nn.Sequential)]
    assert len(blocks) == 4
    assert all(leaf_types(block) == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU] for block in blocks)
    # the pools sit after the 28x28 block and after the two 14x14 blocks
    assert [type(m) for m in features.children()] == [
        nn.Sequential,
        nn.MaxPool2d,
        nn.Sequential,
        nn.Sequential,
        nn.MaxPool2d,
        nn.Sequential,
    ]


def test_unknown_name_lists_the_valid_ones_and_where_to_add_one() -> None:
    names = ", ".join(sorted(MODELS))  # the registry's, sorted
    with pytest.raises(PipelineError) as error:
        build_model("vgg16")
    assert str(error.value) == (
        f"'vgg16' is not a registered architecture (fix: name one of {names}, or add "
        'src/mnist_pipeline/architectures/vgg16.py as the README\'s "Adding a model" says)'
    )


def test_the_registry_is_the_modules_in_the_architectures_folder() -> None:
    files = sorted(p.stem for p in ARCHITECTURES.glob("*.py") if p.stem not in ("__init__", "shared"))
    assert list(MODELS) == files  # a module added beside them is one more (the new-model e2e test adds one)
    assert {"bnnet", "cnn2", "cnn6", "lenet", "mlp", "resnet18"} <= set(files)


def imported_architectures(code: str) -> list[str]:
    """The architecture modules a fresh interpreter has imported after running code."""
    probe = (
        f"import sys\n{code}\nprint(sorted(m for m in sys.modules if m.startswith('mnist_pipeline.arch')))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return eval(result.stdout)  # a printed list of str


def test_building_one_architecture_imports_only_its_module_and_a_name_check_imports_none() -> None:
    assert imported_architectures("from mnist_pipeline.models import MODELS\nassert 'lenet' in MODELS") == [
        "mnist_pipeline.architectures"
    ]
    assert imported_architectures("from mnist_pipeline.models import build_model\nbuild_model('mlp')") == [
        "mnist_pipeline.architectures",
        "mnist_pipeline.architectures.mlp",
        "mnist_pipeline.architectures.shared",
    ]


def test_a_module_that_registers_no_architecture_of_its_name_is_one_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "typo.py").write_text(
        "from mnist_pipeline.architectures.shared import register_model\n"
        "register_model('typ0', 'a test model', ('test',), 0)(lambda: None)\n"
    )
    monkeypatch.setattr(architectures, "__path__", [*architectures.__path__, str(tmp_path)])
    monkeypatch.setattr(models, "_CARDS", dict(models._CARDS))  # what the test registers goes away with it
    assert "typo" in MODELS
    with pytest.raises(PipelineError) as error:
        build_model("typo")
    assert str(error.value) == (
        "src/mnist_pipeline/architectures/typo.py registers no architecture 'typo' (fix: decorate its "
        'builder with @register_model("typo", ...), as architectures/mlp.py does)'
    )
    sys.modules.pop("mnist_pipeline.architectures.typo", None)
