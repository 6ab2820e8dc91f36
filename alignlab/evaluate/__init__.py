"""Evaluation: an lm-eval-style LM interface, YAML tasks, LLM-as-judge, and an OpenAI-compatible server.

- :mod:`alignlab.evaluate.interface` — ``LM`` (loglikelihood, loglikelihood_rolling, generate), what every
  backend implements; :mod:`alignlab.evaluate.lm` — ``HuggingFaceLM``, ``load_lm`` (and re-exports ``LM``);
  :mod:`alignlab.evaluate.http_lm` — ``OpenAILM`` for OpenAI-compatible servers.
- :mod:`alignlab.evaluate.tasks` — the task registry (``get_task``, ``list_tasks``, ``register_task``);
  built-in YAML tasks live in ``alignlab/evaluate/tasks/``.
- :mod:`alignlab.evaluate.run` — ``evaluate(EvalConfig(model, tasks, output))`` → ``results.json`` + samples.
- :mod:`alignlab.evaluate.judge` — single / pairwise / reference-guided judging, Bradley–Terry; ``run_judge``.
- :mod:`alignlab.evaluate.serve` — ``serve(ServeConfig(model))``, ``alignlab serve``; :mod:`alignlab.evaluate.cli` — the sub-commands.

Nothing heavy is imported here, so ``alignlab --help`` stays fast.
"""
