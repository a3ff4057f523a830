"""The one typed configuration object of rearec-tf.

Every hyper-parameter of data preparation, model, objective and training lives in
:class:`Config`. It serialises to JSON (``config.json`` is written next to every run,
checkpoint and export) so any result can be re-run from its folder::

    cfg = Config.preset("paper", dataset="beauty", method="prl")
    cfg.save("runs/x/config.json")
    same = Config.load("runs/x/config.json")
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import os
import textwrap
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Dict, Optional, Tuple

METHODS = ("base", "erl", "prl")
BACKBONES = ("sasrec", "sasrec_preln", "bert4rec", "gru4rec", "feature")
QKV_INITS = ("normal", "torch_mha")  # see rearec_tf.layers.attention.qkv_initializer
LOSSES = ("full_softmax", "retrieval")
SAMPLE_MODES = ("prefix", "all")
SPLITS = ("loo", "timestamp")
SCORING_DTYPES = ("float32", "bfloat16")


@dataclass
class Config:
    # ----------------------------------------------------------------- data
    dataset: str = "beauty"
    """Named dataset (ml-1m, beauty, sports, toys, yelp, lastfm, ml-100k) or ``file``."""
    data_dir: Optional[str] = None
    """Folder holding the named datasets; default ``$REAREC_DATA_DIR``."""
    data_file: Optional[str] = None
    """For ``dataset='file'``: path of an interaction log (csv, parquet, txt, inter)."""
    data_format: Optional[str] = None
    """Reader for ``data_file``: pairs, sequences, inter, movielens, csv, parquet."""
    user_col: str = "user_id"
    item_col: str = "item_id"
    time_col: Optional[str] = "timestamp"
    k_core: int = 0
    """Keep users and items with at least this many interactions (0 = no filtering)."""
    split: str = "loo"
    """``loo`` (leave-one-out: last item test, second-to-last valid) or ``timestamp``."""
    split_quantiles: Tuple[float, float] = (0.8, 0.9)
    """Global timestamp split: interaction quantiles where validation and test begin."""
    max_len: int = 50
    sample_mode: str = "prefix"
    """``prefix``: one sample per target, loss on the last position (the release);
    ``all``: one window per user, loss on every position (SASRec-style, faster)."""

    bucket_by_length: bool = True
    """Batch samples of similar length together and trim all-padding columns (exact for
    every real position; several times faster on short-sequence data). False = plain
    shuffled full-width batches, as the release trains. With ``sample_mode='all'`` the
    loss is the mean over the batch's positions, so buckets also change the objective:
    a batch of short histories weighs as much as one of long histories, i.e. a position
    counts about 1/its-bucket-width, where shuffled batches weigh every position alike
    (as the SASRec-CE literature trains)."""

    # ---------------------------------------------------------------- model
    backbone: str = "sasrec"
    """``sasrec`` (causal Transformer, SPEC §2), ``sasrec_preln`` (the same in the SASRec
    reference code's pre-LN layout: √d item embeddings, ReLU FFN, final LayerNorm),
    ``bert4rec`` (bidirectional among items, causal for reasoning tokens), ``gru4rec``
    (recurrent; the state is the cache) or ``feature`` (SASRec over items represented by
    features through an adapter)."""
    item_features: Optional[str] = None
    """``feature`` backbone: ``attributes`` (the dataset's ``*_item2attributes.json``,
    pooled attribute embeddings) or a path to a ``.npy``/``.npz``/``.parquet`` file of
    frozen item vectors keyed by external item id, or of an S3-Rec style
    ``item2attributes`` ``.json`` (see ``rearec_tf/data/item_features.py``)."""
    feature_adapter: str = "mlp"
    """Adapter from item features to the model width: ``linear``, ``mlp`` or ``moe``
    (UniSRec's mixture of parametric-whitening experts)."""
    feature_experts: int = 8
    """Experts of the ``moe`` adapter."""
    feature_with_id: bool = True
    """Add a learned ID embedding to the adapted features (False: features only)."""
    hidden_size: int = 256
    num_layers: int = 2
    num_heads: int = 2
    ffn_size: int = 300
    hidden_dropout: float = 0.5
    attention_dropout: float = 0.5
    input_dropout: float = 0.2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    qkv_init: str = "normal"
    """Query/key/value kernel init (Transformer backbones): ``normal`` = N(0,
    initializer_range) like every weight (SPEC §2); ``torch_mha`` = PyTorch
    ``nn.MultiheadAttention``'s default U(±√(6/4d)), as the SASRec reference code trains."""

    # ------------------------------------------------------------ reasoning
    method: str = "base"
    """``base`` (the backbone alone), ``erl`` or ``prl``."""
    reason_steps: int = 2
    """K, the number of latent reasoning steps used in training (ignored by base)."""
    max_reason_steps: int = 8
    """Size of the reasoning position table and the largest K' allowed at inference."""
    temperature: Optional[float] = None
    """Softmax temperature τ of the scores. ``None`` = method default (base 1.0,
    erl 0.5, prl 0.5; the release's 0.07 makes ERL diverge to NaN)."""
    erl_lambda: float = 0.05
    erl_rec_loss: str = "pooled"
    """``pooled`` (CE on the mean of r0..rK: paper v3 and release) or ``per_step``."""
    erl_pairs: str = "ordered"
    """``ordered`` (mean over i≠j, the release) or ``upper`` (sum over i<j, the paper)."""
    prl_alpha: float = 5.0
    prl_noise_std: float = 0.01
    """Std of the RCL noise (release 0.01; the paper's variance 0.01 means std 0.1)."""
    prl_warmup_epochs: int = 2
    """Epochs before the reasoning-aware contrastive loss starts (release: 2)."""
    prl_share_prefix: bool = True
    """The noisy branch reuses the clean step-0 encoding (same item-token dropout) instead
    of re-encoding a duplicated batch with its own dropout (the release). About halves
    PRL's extra cost; identical without dropout. False = the release exactly."""
    prl_pl_weight: float = 1.0
    prl_cl_weight: float = 1.0
    prl_step_weighting: str = "mean"
    """``mean`` over the earlier steps (release) or ``sum`` (paper Eq. 10)."""
    warmup_epochs: int = 0
    """Epochs that train the backbone alone (K=0) before reasoning is switched on."""

    # ----------------------------------------------------------------- loss
    loss: str = "full_softmax"
    """``full_softmax`` (exact CE over the catalogue, the paper's) or ``retrieval``
    (TFRS retrieval task with in-batch negatives, log-Q correction, hit removal)."""
    logq_correction: bool = True
    remove_accidental_hits: bool = True
    scoring_dtype: str = "float32"
    """Dtype of the training loss's full-catalogue scoring product (forward and both
    gradient products, the largest matmuls of training): ``float32``, or ``bfloat16``
    (logits back in float32 before the softmax; faster on CPUs with AMX / AVX512-BF16
    and on GPUs). Evaluation and exports always score in float32."""

    # ------------------------------------------------------------- training
    epochs: int = 300
    batch_size: int = 2048
    eval_batch_size: int = 1024
    learning_rate: float = 1e-3
    patience: int = 10
    seed: int = 0
    select_metric: str = "ndcg@20"
    select_masked: bool = False
    """Model selection on validation with history masked (True) or not (False, release)."""
    jit_compile: bool = False
    micro_batches: int = 1
    """Split every training batch into this many micro-batches and accumulate their
    gradients before the one optimizer update: the same update as the whole batch for
    losses that are means over samples (SASRec, ERL, full softmax), with the activation
    memory of a micro-batch. In-batch negatives (PRL's InfoNCE, ``loss='retrieval'``)
    then come from the micro-batch."""
    steps_per_epoch: Optional[int] = None
    """Cap on training batches per epoch (None = the whole training set)."""

    # ------------------------------------------------------------------ API
    def __post_init__(self) -> None:
        self.split_quantiles = tuple(self.split_quantiles)  # JSON gives a list
        self.validate()

    def validate(self) -> "Config":
        def check(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(f"invalid config: {msg}")

        check(self.method in METHODS, f"method={self.method!r}; choose one of {METHODS}")
        check(self.scoring_dtype in SCORING_DTYPES,
              f"scoring_dtype={self.scoring_dtype!r}; choose one of {SCORING_DTYPES}")
        check(isinstance(self.micro_batches, int) and 1 <= self.micro_batches <= self.batch_size,
              f"micro_batches={self.micro_batches!r}; use an integer from 1 (off) to batch_size")
        check(self.backbone in BACKBONES, f"backbone={self.backbone!r}; choose one of {BACKBONES}")
        check(self.qkv_init in QKV_INITS, f"qkv_init={self.qkv_init!r}; choose one of {QKV_INITS}")
        check(self.feature_adapter in ("linear", "mlp", "moe"),
              f"feature_adapter={self.feature_adapter!r}; choose linear, mlp or moe")
        check(self.backbone != "feature" or self.item_features,
              "backbone='feature' needs item_features: 'attributes' (the dataset's "
              "*_item2attributes.json) or the path of a .npy/.npz/.parquet feature file")
        check(self.backbone != "bert4rec" or self.sample_mode == "prefix",
              "backbone='bert4rec' attends bidirectionally among items, so all-position "
              "samples would see their own targets; use sample_mode='prefix'")
        check(self.loss in LOSSES, f"loss={self.loss!r}; choose one of {LOSSES}")
        check(self.sample_mode in SAMPLE_MODES,
              f"sample_mode={self.sample_mode!r}; choose one of {SAMPLE_MODES}")
        check(self.split in SPLITS, f"split={self.split!r}; choose one of {SPLITS}")
        check(self.max_len >= 1, f"max_len={self.max_len} must be >= 1")
        check(self.hidden_size % self.num_heads == 0,
              f"hidden_size={self.hidden_size} must be divisible by num_heads={self.num_heads}")
        check(0 <= self.reason_steps <= self.max_reason_steps,
              f"reason_steps={self.reason_steps} must be in [0, max_reason_steps={self.max_reason_steps}]")
        check(self.temperature is None or self.temperature > 0,
              f"temperature={self.temperature} must be > 0")
        check(self.erl_rec_loss in ("pooled", "per_step"), f"erl_rec_loss={self.erl_rec_loss!r}")
        check(self.erl_pairs in ("ordered", "upper"), f"erl_pairs={self.erl_pairs!r}")
        check(self.prl_step_weighting in ("mean", "sum"),
              f"prl_step_weighting={self.prl_step_weighting!r}")
        check(self.batch_size > 0 and self.eval_batch_size > 0, "batch sizes must be > 0")
        check(self.sample_mode == "prefix" or self.method == "base",
              "sample_mode='all' trains the step-0 state at every position and is only "
              "defined for method='base'; use sample_mode='prefix' for erl/prl")
        return self

    @property
    def tau(self) -> float:
        """The effective temperature."""
        if self.temperature is not None:
            return float(self.temperature)
        return 1.0 if self.method == "base" else 0.5

    @property
    def select_mode(self) -> str:
        """The masking mode model selection reads: ``'masked'`` or ``'unmasked'``."""
        return "masked" if self.select_masked else "unmasked"

    @property
    def select_key(self) -> str:
        """The selection metric as a result key (``'ndcg@20'``)."""
        return self.select_metric.strip().lower()

    @property
    def train_steps(self) -> int:
        """Reasoning steps used by the method (0 for base)."""
        return 0 if self.method == "base" else self.reason_steps

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["split_quantiles"] = list(self.split_quantiles)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Config":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**d)

    def save(self, path: str) -> None:
        """Write config.json atomically."""
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(self.to_json() + "\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> "Config":
        try:
            with open(path) as f:
                return cls.from_dict(json.load(f))
        except FileNotFoundError:
            raise FileNotFoundError(f"config file {path!r} does not exist") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"config file {path!r} is not valid JSON: {e}") from None

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "Config":
        """``paper``: d=256, 2 layers, 2 heads, ffn 300, dropout 0.5, max_len 50, Adam 1e-3,
        batch 2048, prefix samples (the release). ``ml1m``: the ML-1M literature's
        SASRec-CE as the RecSys'23 anchor code trains it (pre-LN ``sasrec_preln`` block,
        d=64, 1 head, ffn 64, dropout 0.1, PyTorch's attention init, max_len 200,
        all-position loss over shuffled full-width batches, Adam 1e-3, batch 128).
        ``small``: d=64 with the paper's other settings."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    # ------------------------------------------------------------- CLI glue
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add one ``--field`` flag per config field (default: not given)."""
        group = parser.add_argument_group("config fields (override --config/--preset)")
        hints = typing.get_type_hints(cls)
        docs = field_docs(cls)
        for f in fields(cls):
            flag = "--" + f.name.replace("_", "-")
            hint = hints[f.name]
            # An absent flag leaves the attribute unset (SUPPRESS), so --config/--preset
            # values stand and help shows the field's own default, not argparse's None.
            help_ = (docs.get(f.name, "") + f" (default {f.default})").strip()
            if hint is bool:
                group.add_argument(flag, dest=f.name, type=_parse_bool, default=argparse.SUPPRESS,
                                   metavar="BOOL", help=help_)
            elif f.name == "split_quantiles":
                group.add_argument(flag, dest=f.name, type=float, nargs=2,
                                   default=argparse.SUPPRESS, help=help_)
            else:
                group.add_argument(flag, dest=f.name, type=_base_type(hint),
                                   default=argparse.SUPPRESS, help=help_)

    @classmethod
    def given_flags(cls, args: argparse.Namespace) -> Dict[str, Any]:
        """The config fields given on the command line (parsed by :meth:`add_arguments`)."""
        return {f.name: v for f in fields(cls) if (v := getattr(args, f.name, None)) is not None}

    @classmethod
    def from_args(cls, args: argparse.Namespace, base: Optional["Config"] = None) -> "Config":
        return (base or cls()).replace(**cls.given_flags(args))


def field_docs(cls) -> Dict[str, str]:
    """The first sentence of each field's docstring (the string literal under it in the
    class body), for ``--help``. Empty when the source is not available."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)):
            text = " ".join(nxt.value.value.split())
            docs[node.target.id] = text.split(". ")[0].rstrip(".") + "."
    return docs


def _parse_bool(s: str) -> bool:
    v = s.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {s!r}")


def _base_type(hint: Any) -> Any:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


PRESETS: Dict[str, Dict[str, Any]] = {
    "paper": dict(hidden_size=256, num_layers=2, num_heads=2, ffn_size=300,
                  hidden_dropout=0.5, attention_dropout=0.5, input_dropout=0.2,
                  max_len=50, learning_rate=1e-3, batch_size=2048, sample_mode="prefix"),
    "small": dict(hidden_size=64, num_layers=2, num_heads=2, ffn_size=256,
                  hidden_dropout=0.5, attention_dropout=0.5, input_dropout=0.2,
                  max_len=50, learning_rate=1e-3, batch_size=256, sample_mode="prefix"),
    # The RecSys'23 SASRec-CE code (antklen/sasrec-bert4rec-recsys23), setting by setting.
    "ml1m": dict(dataset="ml-1m", backbone="sasrec_preln", qkv_init="torch_mha",
                 hidden_size=64, num_layers=2, num_heads=1, ffn_size=64,
                 hidden_dropout=0.1, attention_dropout=0.1, input_dropout=0.1,
                 max_len=200, learning_rate=1e-3, batch_size=128, sample_mode="all",
                 bucket_by_length=False, select_masked=True),
}
