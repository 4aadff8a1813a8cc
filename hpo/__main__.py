from hpo.cli.main import main

main()
