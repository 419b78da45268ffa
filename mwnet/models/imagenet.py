"""ResNet-50 from torchvision, for 224 x 224 images (Clothing1M), ImageNet-pretrained on request.

The meta step calls any module functionally (torch.func.functional_call), so torchvision's model serves as
it is; its last layer is replaced for the dataset's classes. The weights come through torchvision's weights
API (downloaded once into the torch cache, $TORCH_HOME, and hash-checked there), or from a local file.
"""

import contextlib
import hashlib
import io

import torchvision

from mwnet.errors import UserError
from mwnet.untrusted import check_state, torch_file

WEIGHTS = "IMAGENET1K_V1"  # the classic ImageNet weights of the Clothing1M papers of 2017-2019
LAST = ("fc.weight", "fc.bias")  # replaced for the dataset's classes


def resnet50(num_classes):
    return torchvision.models.resnet50(num_classes=num_classes)


def load_pretrained(model, source):
    """Load ImageNet weights (source "imagenet") or a saved state dict (a file) into `model`, all but its last
    layer; returns what config.json records of them."""
    if source == "imagenet":
        try:  # torch.hub says "Downloading ..." on stderr; the outcome is said here, in one line
            with contextlib.redirect_stderr(io.StringIO()):
                state = torchvision.models.ResNet50_Weights[WEIGHTS].get_state_dict(progress=False, check_hash=True)
        except (OSError, RuntimeError, ValueError) as e:  # offline, a proxy, a damaged cache file
            raise UserError(
                f"could not get ResNet-50's ImageNet weights ({str(e).splitlines()[0][:100]}); on a connected machine run python -c \"import torchvision; torchvision.models.resnet50(weights='{WEIGHTS}')\" once (they stay in the torch cache), or pass --pretrained FILE with a saved state dict"
            ) from None
        recorded = {"weights": f"torchvision ResNet50_Weights.{WEIGHTS}"}
    else:
        fix = "pass a state dict of torchvision's ResNet-50 saved with torch.save (model.state_dict())"
        state = torch_file(source, "a state dict of ResNet-50", fix, name=f"--pretrained {source}")
        with open(source, "rb") as f:
            recorded = {"file": source, "sha256": hashlib.sha256(f.read()).hexdigest()}
        # the last layer may be absent or of ImageNet's 1000 classes: then the model keeps its own, new one
        check_state(model, state, "ResNet-50's weights", fix, name=f"--pretrained {source}", skip=LAST)
    own = model.state_dict()
    last = {k for k in LAST if k in state and state[k].shape != own[k].shape}
    model.load_state_dict({k: v for k, v in state.items() if k not in last}, strict=False)
    return recorded
