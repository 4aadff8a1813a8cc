"""The keys hpo adds to a trial's config and results, shared by the trial (inside Ray) and the driver."""

TRIAL_NUMBER_KEY = "hpo_trial_number"  # config: the Optuna trial number, a trial's identity across resumes
RESUME_KEY = "hpo_resume_from"  # config: a checkpoint to continue from, set for interrupted trials
OOM_KEY = "hpo_out_of_memory"  # last result: out of GPU memory at the smallest micro-batch
STORAGE_FULL_KEY = "hpo_storage_full"  # last result: the checkpoint could not be written (no space left)
GROUP_RESTART_KEY = "hpo_group_restarted_after"  # result: Ray Train restarted the trial's DDP group from this epoch
NODE_KEY = "hpo_node_id"  # results: the Ray node (node_ip alone cannot tell nodes of one host apart)
SYSTEM_PREFIX = "system/"  # results: the trial's machine use over the epoch (MLflow's system-metrics names)
