from apps.dispatch.simulator.server import main

main()
