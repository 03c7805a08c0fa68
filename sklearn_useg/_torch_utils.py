"""Torch utilities shared by the methods: the device, seeded weights and one thread per
image (a leaf module: it imports nothing from the package; torch is imported lazily)."""

from contextlib import contextmanager

from threadpoolctl import threadpool_limits


def resolve_device(device):
    """The ``torch.device`` that a ``device`` parameter names.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"`` (CUDA when available, else the CPU), ``"cpu"``, ``"cuda"`` or
        ``"cuda:N"``.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        If ``device`` names no device.
    """
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', "
                         f"got {device!r}.") from exc


def available_device(device):
    """``device``, or the CPU when it is a CUDA device and this machine has none (a model
    fitted on a GPU, loaded without one)."""
    import torch

    if device.type == "cuda" and not torch.cuda.is_available():
        return torch.device("cpu")
    return device


def draw_seed(random_state):
    """An int seed drawn from a ``numpy.random.RandomState``."""
    return int(random_state.randint(2**31 - 1))


@contextmanager
def torch_seed(seed):
    """Within this context torch's CPU generator is seeded with ``seed``; its previous
    state is restored on exit (weights initialised in it are reproducible and the
    caller's random stream is untouched)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextmanager
def single_thread():
    """Run BLAS, OpenMP and torch's CPU ops on one thread within this context.

    Per-image problems are small: extra threads gain nothing there, and their
    busy-waiting makes them many times slower on a loaded machine. Images run in
    parallel through ``n_jobs`` instead.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(previous)
