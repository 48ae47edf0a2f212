from snapshotd.cli import main

main()
