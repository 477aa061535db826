"""The one exception type for mistakes a user can make (paths, ids, shapes, labels, files)."""


class UserInputError(Exception):
    """A problem with what the user gave us, stated in one line that names the file or case.

    The CLI prints the message and exits with code 2, without a traceback. Library code raises it
    only for problems the user can fix; programming errors stay ordinary exceptions.
    """
