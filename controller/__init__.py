"""Search strategies behind one small interface (see :mod:`controller.base`)."""
