"""The ``hpo`` command: :mod:`.main` parses and dispatches; a module per family of commands (:mod:`._run_commands`,
:mod:`._study_commands`, :mod:`._view_commands`, :mod:`._model_commands`), each imported only when one of its commands
runs.

May import everything else in hpo; nothing imports it.
"""
