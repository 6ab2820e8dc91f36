"""Evaluation: an lm-eval-style LM interface, YAML tasks, LLM-as-judge, and an OpenAI-compatible server.

- :mod:`alignlab.evaluate.lm` — ``LM`` (loglikelihood, loglikelihood_rolling, generate), ``HuggingFaceLM``,
  ``load_lm``; :mod:`alignlab.evaluate.http_lm` — ``OpenAILM`` for OpenAI-compatible servers.
- :mod:`alignlab.evaluate.tasks` — the task registry (``get_task``, ``list_tasks``, ``register_task``);
  built-in YAML tasks live in ``alignlab/evaluate/tasks/``.
- :mod:`alignlab.evaluate.run` — ``evaluate(model, tasks, output_dir)`` → ``results.json`` + samples.
- :mod:`alignlab.evaluate.judge` — single / pairwise / reference-guided judging, Bradley–Terry.
- :mod:`alignlab.evaluate.serve` — ``alignlab serve``; :mod:`alignlab.evaluate.cli` — the sub-commands.

Nothing heavy is imported here, so ``alignlab --help`` stays fast.
"""
