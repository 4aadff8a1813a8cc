"""The ``hpo`` command: :mod:`.main` parses and dispatches; a module per family of commands (:mod:`.run_commands`,
:mod:`.study_commands`, :mod:`.view_commands`, :mod:`.model_commands`), each imported only when one of its commands
runs.

May import everything else in hpo; nothing imports it.
"""
