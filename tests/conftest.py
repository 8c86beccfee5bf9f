import logging

import pytest


def pytest_configure(config):
    # As node processes do (p2pwalrus/gc_tuning.py): many tests run whole networks in this
    # process, and the collector's full passes over them cost as much as in `netlab inproc`.
    from p2pwalrus import gc_tuning

    gc_tuning.apply()


@pytest.fixture(autouse=True)
def quiet_libp2p():
    # py-libp2p logs every refused protocol negotiation and closed DHT stream.
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    yield
