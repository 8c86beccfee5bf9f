import logging

import pytest


@pytest.fixture(autouse=True)
def quiet_libp2p():
    # py-libp2p logs every refused protocol negotiation and closed DHT stream.
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    yield
