"""Data sources for the Data layer and Caffe's transforms.

    sources.py       open_source(): the backend a DataParameter names (detected when unset)
    idx.py           MNIST-style IDX files (.gz or plain)
    npz.py           NumPy .npz files with arrays `data` and `label`
    lmdb_source.py   LMDB of Caffe Datum records (optional `lmdb` package)
    order.py         Caffe's cycling record order, optionally reshuffled each epoch
    transform.py     Caffe's DataTransformer (mean, scale, crop, mirror) over whole batches
    paths.py         relative paths: the current directory first, then the prototxt's folder
"""
