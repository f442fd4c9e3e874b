"""lm-evaluation-harness, both ways: the hooked model as an lm-eval ``LM``, and lm-eval tasks as workbench tasks.

Bansal et al.'s code was built on lm-eval-harness, so the paper's benchmarks (HellaSwag, PIQA,
ARC, BoolQ ...) are lm-eval task definitions.  Two bridges (lm-eval is an optional extra:
``pip install 'interp[lm-eval]'``):

- :func:`hooked_lm` wraps a ``TransformerBridge``, with any forward hooks (a head or FFN mask,
  an ablation), as an lm-eval ``LM``: ``loglikelihood`` and ``loglikelihood_rolling`` run the
  hooked forward; ``generate_until`` refuses with a clear error (the workbench scores, it does
  not generate).  Any lm-eval task of those output types then runs on a pruned or ablated model
  through ``lm_eval.simple_evaluate(model=hooked_lm(...), tasks=[...])``.
- ``lm-eval:NAME`` as a task spec (:func:`load_lm_eval_task`, :func:`lm_eval_prompts`) turns a
  multiple-choice lm-eval task into the workbench's prompts: the context is exactly lm-eval's
  few-shot context (its description, demonstrations drawn by its sampler with the run's seed,
  delimiters), the continuations are its choices behind its target delimiter.  Importance,
  pruning and the causal test then run their batched ablations on the paper's tasks.  Custom
  task YAML folders are found through ``$INTERP_LM_EVAL_INCLUDE`` (``os.pathsep``-separated).

Tokenisation follows the workbench (:func:`interp.tasks.evaluation.context_token_ids`: BOS, or
EOS, then the context without special tokens, under ``prepend_bos``; the continuation alone), so
an lm-eval run through :func:`hooked_lm` and the workbench's own scoring of the same prompts give
the same log-likelihoods.  Note that lm-eval's ``acc_norm`` divides by the
choice's length *without* the delimiter, the workbench's ``accuracy_norm`` by the continuation's
length with it; ``acc`` and ``accuracy`` are the same definition.

>>> split_lm_eval_spec("lm-eval:hellaswag")
'hellaswag'
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from interp.errors import InterpError

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

    from interp.tasks.schema import Prompt, PromptConfig, Task

__all__ = [
    "INCLUDE_ENV",
    "LM_EVAL_PREFIX",
    "hooked_lm",
    "lm_eval_prompts",
    "load_lm_eval_task",
    "split_lm_eval_spec",
]

LM_EVAL_PREFIX = "lm-eval:"
INCLUDE_ENV = "INTERP_LM_EVAL_INCLUDE"  # folders of custom lm-eval task YAMLs
INSTALL_HINT = "pip install 'interp[lm-eval]'"


def _require_lm_eval() -> None:
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        raise InterpError(f"lm-eval tasks and the lm-eval adapter need the optional package lm-eval: {INSTALL_HINT}"
                          ) from None


def split_lm_eval_spec(spec: str) -> str:
    """``lm-eval:NAME`` -> ``NAME``; anything else is an error naming the form."""
    name = spec.removeprefix(LM_EVAL_PREFIX).strip()
    if not spec.startswith(LM_EVAL_PREFIX) or not name:
        raise InterpError(f"task {spec!r}: an lm-eval task is written lm-eval:NAME, e.g. lm-eval:hellaswag")
    return name


# --------------------------------------------------------------------------------- the model as an LM


def _score_windows(bridge: "TransformerBridge", windows: Sequence[tuple[list[int], list[int]]], fwd_hooks: Sequence,
                   batch_size: int) -> list[tuple[float, bool]]:
    """Summed log-probability of each continuation given its context, and whether it is the greedy one."""
    from interp.tasks.evaluation import pad_id_of

    device, pad = bridge.cfg.device, pad_id_of(bridge.tokenizer)
    order = sorted(range(len(windows)), key=lambda index: -len(windows[index][0]) - len(windows[index][1]))
    results: list[tuple[float, bool]] = [(0.0, False)] * len(windows)
    for start in range(0, len(order), batch_size):
        chosen = order[start : start + batch_size]
        sequences = [windows[index][0] + windows[index][1] for index in chosen]
        tokens = torch.full((len(chosen), max(map(len, sequences))), pad, dtype=torch.long)
        rows, positions, targets = [], [], []
        for row, index in enumerate(chosen):
            context, continuation = windows[index]
            tokens[row, : len(sequences[row])] = torch.tensor(sequences[row])
            rows += [row] * len(continuation)
            positions += range(len(context) - 1, len(context) + len(continuation) - 1)  # logits that predict each
            targets += continuation
        rows_t, positions_t, targets_t = (torch.tensor(values, device=device) for values in (rows, positions, targets))
        with torch.no_grad():
            logits = bridge.run_with_hooks(tokens.to(device), fwd_hooks=list(fwd_hooks), return_type="logits")
        picked = logits[rows_t.to(logits.device), positions_t.to(logits.device)].float()  # (target, vocab)
        log_probs = torch.log_softmax(picked, dim=-1)
        target_logprob = log_probs.gather(-1, targets_t.to(log_probs.device).unsqueeze(-1)).squeeze(-1)
        greedy = (picked.argmax(-1) == targets_t.to(picked.device)).double()
        sums = torch.zeros(len(chosen), dtype=torch.float64, device=log_probs.device)
        sums.index_add_(0, rows_t.to(sums.device), target_logprob.double())
        all_greedy = torch.zeros_like(sums).index_add_(0, rows_t.to(sums.device), 1.0 - greedy) == 0
        pairs = zip(sums.tolist(), all_greedy.tolist(), strict=True)  # one transfer per batch
        for row, (total, is_greedy) in enumerate(pairs):
            results[chosen[row]] = (total, is_greedy)
    return results


_GENERATION_UNSUPPORTED = ("the workbench's lm-eval adapter scores log-likelihoods only; generation tasks "
                           "(output_type: generate_until) are not supported: choose a multiple_choice or "
                           "loglikelihood task")


def _move_trailing_spaces(context: str, continuation: str) -> tuple[str, str]:
    """lm-eval's move of the context's trailing spaces to the start of the continuation."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        return context[:-spaces], context[-spaces:] + continuation
    return context, continuation


def _context_ids(tokenizer: Any, context: str, prepend_bos: bool) -> list[int]:
    """The context's token ids under the workbench's BOS policy (as interp.tasks.evaluation.encode_prompts)."""
    from interp.tasks.evaluation import context_token_ids
    from interp.tasks.schema import Prompt

    prompt = Prompt(item_index=0, context=context, continuations=(), answer_index=0, prepend_bos=prepend_bos)
    return context_token_ids(tokenizer, prompt)


def _left_cut_window(context: Sequence[int], continuation: Sequence[int],
                     max_length: int) -> tuple[list[int], list[int]]:
    """(context, continuation) ids cut from the left to ``max_length + 1`` tokens, as lm-eval cuts them."""
    whole = (list(context) + list(continuation))[-(max_length + 1):]
    return whole[: len(whole) - len(continuation)], whole[len(whole) - len(continuation):]


@functools.cache
def _lm_class() -> type:
    """The LM subclass, built on first use so that lm-eval is imported only when it is wanted."""
    _require_lm_eval()
    from lm_eval.api.model import TemplateLM
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    class HookedLM(TemplateLM):
        """A ``TransformerBridge`` with forward hooks, as lm-eval sees a model."""

        def __init__(self, bridge: "TransformerBridge", fwd_hooks: Sequence = (), batch_size: int = 8,
                     prepend_bos: bool = True) -> None:
            super().__init__()
            self.bridge, self.fwd_hooks, self.batch_size = bridge, list(fwd_hooks), batch_size
            self.prepend_bos = prepend_bos
            self.tokenizer = bridge.tokenizer
            self.max_length = int(bridge.cfg.n_ctx)

        @property
        def eot_token_id(self) -> int:
            return int(self.tokenizer.eos_token_id)

        @property
        def prefix_token_id(self) -> int:
            bos = self.tokenizer.bos_token_id
            return int(bos) if bos is not None else self.eot_token_id

        def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
            return list(self.tokenizer(string, add_special_tokens=bool(add_special_tokens))["input_ids"])

        def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
            # The workbench's convention (interp.tasks.evaluation.encode_prompts): its BOS policy on the context,
            # the continuation alone.  lm-eval's trailing-space move is kept.
            context, continuation = _move_trailing_spaces(context, continuation)
            return _context_ids(self.tokenizer, context, self.prepend_bos), self.tok_encode(continuation)

        def _loglikelihood_tokens(self, requests: list, disable_tqdm: bool = False, **kwargs: Any
                                  ) -> list[tuple[float, bool]]:
            windows = [_left_cut_window(context, continuation, self.max_length)
                       for _, context, continuation in requests]
            results = _score_windows(self.bridge, windows, self.fwd_hooks, self.batch_size)
            for (key, _, _), result in zip(requests, results, strict=True):
                if self.cache_hook is not None and key[0] is not None:
                    self.cache_hook.add_partial("loglikelihood", key, result)
            return results

        def loglikelihood_rolling(self, requests: list, disable_tqdm: bool = False) -> list[float]:
            totals = []
            for (string,) in [request.args for request in requests]:
                windows = [make_disjoint_window(window) for window in get_rolling_token_windows(
                    self.tok_encode(string), self.prefix_token_id, self.max_length, context_len=1)]
                scored = self._loglikelihood_tokens([((None, None), context, target) for context, target in windows])
                totals.append(sum(total for total, _ in scored))
            return totals

        def generate_until(self, requests: list, disable_tqdm: bool = False) -> list[str]:
            raise InterpError(_GENERATION_UNSUPPORTED)

    return HookedLM


def hooked_lm(bridge: "TransformerBridge", fwd_hooks: Sequence = (), batch_size: int = 8,
              prepend_bos: bool = True) -> Any:
    """``bridge`` with ``fwd_hooks`` (e.g. :func:`interp.hooks.heads_removed_hooks`) as an lm-eval ``LM``.

    ``prepend_bos``: the workbench's BOS policy for contexts (``PromptConfig.prepend_bos``).

    >>> from interp.models.loading import load_model                      # doctest: +SKIP
    >>> import lm_eval                                                     # doctest: +SKIP
    >>> bridge, _ = load_model("smollm2-135m")                             # doctest: +SKIP
    >>> lm = hooked_lm(bridge, heads_removed_hooks(bridge, [(5, 1)]))      # doctest: +SKIP
    >>> lm_eval.simple_evaluate(model=lm, tasks=["piqa"], limit=50)["results"]  # doctest: +SKIP
    """
    if batch_size < 1:
        raise InterpError(f"batch_size must be positive, got {batch_size}")
    return _lm_class()(bridge, fwd_hooks, batch_size, prepend_bos)


# --------------------------------------------------------------------------------- tasks as prompts


def _task_manager(name: str, include: str) -> Any:
    """The custom folders alone when they define ``name`` (indexing lm-eval's thousands of built-in YAMLs takes
    minutes); otherwise those folders and lm-eval's own tasks."""
    from lm_eval.tasks import TaskManager

    if include:
        custom = TaskManager(include_path=include.split(os.pathsep), include_defaults=False)
        if name in custom.all_tasks:
            return custom
    return TaskManager(include_path=include.split(os.pathsep) if include else None)


@functools.cache
def _task_object(name: str, include: str) -> Any:
    """The lm-eval Task of ``name`` (documents loaded), once per process."""
    _require_lm_eval()
    from lm_eval.tasks import get_task_dict

    manager = _task_manager(name, include)
    try:
        tasks = get_task_dict([name], manager)
    except Exception as error:  # noqa: BLE001 - unknown names, unreachable datasets and bad YAML all land here
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        raise InterpError(f"lm-eval task {name!r} could not be loaded ({first}); its data may need the network or a "
                          f"populated Hugging Face cache, and custom YAMLs a folder in ${INCLUDE_ENV}") from None
    task = tasks.get(name)
    if task is None or not hasattr(task, "doc_to_choice"):
        raise InterpError(f"lm-eval name {name!r} is a group; give one of its tasks")
    if task.OUTPUT_TYPE != "multiple_choice" or getattr(task, "multiple_input", False):
        raise InterpError(f"lm-eval task {name!r} has output type {task.OUTPUT_TYPE}"
                          f"{' with one context per choice' if getattr(task, 'multiple_input', False) else ''}; "
                          "workbench studies take multiple_choice tasks with one context (hooked_lm runs the others)")
    return task


def _gold_index(task: Any, doc: dict, choices: list[str]) -> int:
    target = task.doc_to_target(doc)
    if isinstance(target, list):
        target = target[0]  # several gold answers: the workbench scores the first
    index = choices.index(target) if isinstance(target, str) else int(target)
    if not 0 <= index < len(choices):
        raise InterpError(f"lm-eval task {task.config.task!r}: a document's target {target!r} is not among its choices")
    return index


def load_lm_eval_task(spec: str) -> "Task":
    """``lm-eval:NAME`` as a workbench :class:`~interp.tasks.prompts.Task` (items in lm-eval's document order)."""
    from interp.tasks.schema import Task, TaskItem

    name = split_lm_eval_spec(spec)
    task = _task_object(name, os.environ.get(INCLUDE_ENV, ""))
    items = []
    for _, doc in task.doc_iterator():
        choices = [str(choice) for choice in task.doc_to_choice(doc)]
        answer = choices[_gold_index(task, doc, choices)]
        items.append(TaskItem(str(task.doc_to_text(doc)), answer, tuple(choices)))
    if not items:
        raise InterpError(f"lm-eval task {name!r} has no documents")
    return Task(f"{LM_EVAL_PREFIX}{name}", tuple(items), f"{LM_EVAL_PREFIX}{name}")


def lm_eval_prompts(task: "Task", shots: int, config: "PromptConfig") -> list["Prompt"]:
    """Prompts with lm-eval's own few-shot contexts: the first ``config.max_items`` documents (lm-eval's ``limit``),
    demonstrations drawn by its sampler seeded with ``config.seed`` (its ``fewshot_random_seed``)."""
    from interp.tasks.schema import Prompt

    if shots < 0:
        raise InterpError(f"shots must be 0 or more, got {shots}")
    lm_task = _task_object(split_lm_eval_spec(task.source), os.environ.get(INCLUDE_ENV, ""))
    lm_task.set_fewshot_seed(seed=config.seed)
    delimiter = lm_task.config.target_delimiter
    prompts = []
    for doc_id, doc in lm_task.doc_iterator(limit=config.max_items):
        choices = [str(choice) for choice in lm_task.doc_to_choice(doc)]
        context = lm_task.fewshot_context(doc, num_fewshot=shots, gen_prefix=lm_task.doc_to_prefix(doc))
        prompts.append(Prompt(item_index=int(doc_id), context=context,
                              continuations=tuple(f"{delimiter}{choice}" for choice in choices),
                              answer_index=_gold_index(lm_task, doc, choices), prepend_bos=config.prepend_bos))
    return prompts
