from sightql.cli import main

main()
