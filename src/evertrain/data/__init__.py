"""evertrain.data: corpora -> tokenizer -> token shards, and a mixture sampler for replay and curricula.

>>> from evertrain.data import train_tokenizer, prepare, MixtureSampler
>>> tok = train_tokenizer(["stdlib-english", "stdlib-code"], "tok.json", vocab_size=4096)  # doctest: +SKIP
>>> english = prepare(["stdlib-english"], "data/english", tokenizer=tok)                    # doctest: +SKIP
>>> code = prepare(["stdlib-code"], "data/code", tokenizer=tok)                             # doctest: +SKIP
>>> sampler = MixtureSampler({"old": english, "new": code}, weights={"old": 0.25, "new": 0.75},
...                          seq_len=128, batch_size=16, seed=0)                            # doctest: +SKIP
>>> x, y = sampler.next_batch()                                                             # doctest: +SKIP

No torch here: everything is numpy (``torch.from_numpy(x)`` is zero-copy).
"""

from evertrain.data.corpora import (
    BUILTIN_CORPORA,
    TXT_DOCUMENT_BYTES,
    SourceStats,
    builtin_documents,
    iter_documents,
)
from evertrain.data.errors import DataError
from evertrain.data.integrity import check_vocabulary, max_token_id, verify_shards
from evertrain.data.mixtures import (
    cyclic,
    linear,
    mixture_table,
    plot_mixture,
    rehearsal,
    replay,
    stages,
)
from evertrain.data.sampler import MixtureSampler, PowerLawRehearsal, iter_eval_batches
from evertrain.data.shards import PreparedDataset, check_same_tokenizer, prepare, token_dtype
from evertrain.data.tokenizer import EOS_TOKEN, load_tokenizer, train_tokenizer

__all__ = [
    "BUILTIN_CORPORA",
    "EOS_TOKEN",
    "DataError",
    "MixtureSampler",
    "PowerLawRehearsal",
    "PreparedDataset",
    "SourceStats",
    "TXT_DOCUMENT_BYTES",
    "builtin_documents",
    "check_same_tokenizer",
    "check_vocabulary",
    "iter_documents",
    "iter_eval_batches",
    "cyclic",
    "linear",
    "load_tokenizer",
    "max_token_id",
    "mixture_table",
    "plot_mixture",
    "rehearsal",
    "replay",
    "stages",
    "prepare",
    "token_dtype",
    "train_tokenizer",
    "verify_shards",
]
