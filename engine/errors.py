"""One error type whose message is a single line telling the user what to do next.

Every failure a user can cause (a bad photo, a silent voice sample, a missing file) raises a subclass of
`EvercallError`; the CLI prints its message as is, and the server reports it without stopping.
"""


class EvercallError(Exception):
    """A failure the user can fix; `str(err)` is one line that says how."""


class PersonaError(EvercallError):
    """The persona folder, photo or voice sample cannot be used."""


class MediaError(EvercallError):
    """An input video or audio file is missing, corrupt or unsupported."""


class DeviceError(EvercallError):
    """A camera, microphone, speaker or virtual device is missing or busy."""


class ModelError(EvercallError):
    """A model file is missing or does not have the expected signature."""


class ConsentError(EvercallError):
    """The persona has no valid consent record for this use."""
