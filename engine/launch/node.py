"""``python -m engine.launch.node RUN --port P --head HOST``: see engine.launch.processes.node_main."""

from engine.launch.processes import node_main

if __name__ == "__main__":
    node_main()
