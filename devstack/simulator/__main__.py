from devstack.simulator.server import main

main()
