"""`make chaos`: faults injected into the default run, every message checked against the simulator.

`stack` starts and reaches the default run (the launcher on a scratch data folder), `traffic` sends
through the public API as a careful client would, `faults` breaks things, `checker` joins what the
API says about each message with what the simulated providers received, `scenarios` puts them
together and `report` prints the table. `python -m devstack.chaos --help`.
"""
