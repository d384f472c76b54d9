"""The entry point: the ``rag`` command and the server that mounts the web UI beside the API.

It sits above everything it wires (common -> index -> rag -> eval -> ui -> newsrag): each package
declares its own subcommands (``register_commands``) and this package only assembles them.
"""
