"""What several tests share: free ports and real servers (:mod:`.servers`), driving `hpo` subprocesses and killing
them by PID (:mod:`.lifecycle`), checking the three stores agree (:mod:`.stores`), reporters (:mod:`.reporters`), a
multi-node Ray cluster (:mod:`.raycluster`), a real browser (:mod:`.browser`), bad configs (:mod:`.bad_configs`)
and the import graph (:mod:`.import_graph`)."""
