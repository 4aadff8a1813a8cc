-- The MLflow backend store lives beside the hpo registry and Optuna (database hpo) on one server.
CREATE DATABASE mlflow OWNER hpo;
