"""Every error minilinen raises on purpose.

Each class subclasses ``MinilinenError`` and the builtin it resembles, so
``except ValueError`` written against Flax keeps working. Messages say what
happened, where (module path, collection, variable), and how to fix it.
"""

from __future__ import annotations


class MinilinenError(Exception):
    """Base class of every error minilinen raises on purpose."""


# --- core data structures -------------------------------------------------


class FrozenDictImmutableError(MinilinenError, ValueError):
    """Writing to a FrozenDict; use ``.copy({...})`` or ``unfreeze`` instead."""


class InvalidFilterError(MinilinenError, TypeError):
    """A ``mutable=`` / collection filter of a type minilinen does not understand."""


# --- scopes and variables -------------------------------------------------


class CollectionNotMutableError(MinilinenError, ValueError):
    """Writing a variable whose collection is not mutable in this call."""


class ParamNotFoundError(MinilinenError, ValueError):
    """A parameter is read in ``apply`` but the given variables do not hold it."""


class VariableNotFoundError(MinilinenError, ValueError):
    """A non-param variable is read but absent, and its collection is immutable."""


class ParamShapeError(MinilinenError, ValueError):
    """A stored parameter's shape differs from the shape its initializer makes."""


class NameInUseError(MinilinenError, ValueError):
    """Two submodules or variables of one module share a name."""


class InvalidNameError(MinilinenError, ValueError):
    """A submodule or variable name that cannot be used (not a str, or has '/')."""


class InvalidRngError(MinilinenError, ValueError):
    """``rngs`` that are not PRNG keys (or a dict of them)."""


class RngStreamMissingError(InvalidRngError):
    """``make_rng(name)`` with no such stream (and no 'params' to fall back on)."""


class ScopeInvalidatedError(MinilinenError, RuntimeError):
    """A bound module or scope used after its ``init``/``apply`` returned."""


# --- modules --------------------------------------------------------------


class SetupAttributeUnboundError(MinilinenError, AttributeError):
    """Reading an attribute defined in ``setup`` on a module that is not bound."""


class ModuleAttributeError(MinilinenError, AttributeError):
    """A module attribute or method that does not exist."""


class UnboundModuleError(MinilinenError, ValueError):
    """Calling something that needs variables on a module outside init/apply."""


class SetAttributeFrozenModuleError(MinilinenError, AttributeError):
    """Setting an attribute of a bound module outside ``setup``."""


class SubmoduleOutsideSetupOrCompactError(MinilinenError, AttributeError):
    """A submodule created in a method that is neither ``setup`` nor ``@compact``."""


class ApplyVariablesError(MinilinenError, TypeError):
    """``apply`` given something other than a dict of collections."""


class ModuleFieldError(MinilinenError, TypeError):
    """A Module class whose fields clash with the reserved ``parent``/``name``."""


class TransformError(MinilinenError, ValueError):
    """A lifted transform used with arguments that cannot work."""


# --- serialization and checkpoints ----------------------------------------


class SerializationError(MinilinenError, ValueError):
    """Bytes or a state dict that cannot be turned into the requested value."""


class StateDictMismatchError(SerializationError):
    """A state dict whose keys, shapes or dtypes disagree with the template."""


class CorruptDataError(SerializationError):
    """Bytes that are truncated, malformed, hostile or fail their checksum."""


class SerializationTypeError(SerializationError, TypeError):
    """A value serialization cannot take: a leaf msgpack cannot store, or non-bytes input."""


class CheckpointError(MinilinenError, OSError):
    """A checkpoint that cannot be written, found or read back."""

    # OSError's own __str__ prints "[Errno None] None: <filename>" once ``filename`` is set.
    __str__ = BaseException.__str__


class CorruptCheckpointError(CheckpointError, CorruptDataError):
    """A checkpoint file whose contents fail verification (the message names the file)."""


class InvalidCheckpointError(CheckpointError):
    """Saving a step at or below an existing checkpoint's step without ``overwrite=True``."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError, ValueError):
    """Restoring a step (or file) for which no checkpoint exists."""


class CheckpointDirectoryError(CheckpointError, NotADirectoryError):
    """Saving into a path that is a file (or under one), or a link to a vanished directory."""


class CheckpointPermissionError(CheckpointError, PermissionError):
    """Saving into a directory this process may not write (read-only, or not creatable)."""


class CheckpointLockedError(CheckpointError):
    """Saving into a directory another process is saving into at the same moment."""


class CheckpointWriteError(CheckpointError):
    """A save that failed while writing (disk full, quota, I/O error); it left nothing behind."""


class CheckpointFallbackWarning(MinilinenError, UserWarning):
    """``restore_checkpoint(..., allow_fallback=True)`` skipped a corrupt checkpoint."""


# --- layers ---------------------------------------------------------------


class LayerConfigError(MinilinenError, ValueError):
    """A layer built with arguments that cannot work together (or with its input)."""


class LayerInputError(MinilinenError, ValueError):
    """An input whose shape or dtype a layer cannot use."""


class MergeParamError(MinilinenError, ValueError):
    """An argument given both to a layer's constructor and its call, or to neither."""


# --- Flax's names ---------------------------------------------------------
# Every class of flax.errors, so ``except flax.errors.X`` keeps working under
# install_as_flax(): an alias where one of ours is raised in Flax's situation.


class ScopeCollectionNotFound(ParamNotFoundError, VariableNotFoundError):
    """A variable is read from a collection the given variables do not hold at all."""


class ApplyModuleInvalidMethodError(ApplyVariablesError):
    """``method=`` that is neither a method name nor a function taking the module."""


class DescriptorAttributeError(ModuleAttributeError):
    """A property of a module raised ``AttributeError`` (re-raised so it is not swallowed)."""


class SetAttributeInModuleSetupError(MinilinenError, ValueError):
    """Assigning a dataclass field of a module inside its own ``setup``."""


class PartitioningUnspecifiedError(TransformError):
    """A Partitioned variable mapped over by scan/vmap without ``nn.PARTITION_NAME``."""


class TransformedMethodReturnValueError(TransformError):
    """A transformed method returned a Module, which cannot leave the transform."""


# --- install_as_flax() and flax.config --------------------------------------


class NotInMinilinenError(MinilinenError, AttributeError):
    """A name under a ``flax`` path (after ``install_as_flax()``) that minilinen lacks."""


class NotInMinilinenImportError(MinilinenError, ModuleNotFoundError):
    """Importing a ``flax`` module path, or a name from one, that minilinen lacks."""


class NNXOutOfScopeError(NotInMinilinenImportError):
    """``flax.nnx`` was imported: minilinen is linen only."""


class RealFlaxImportedError(MinilinenError, ImportError):
    """``install_as_flax()`` called after the real ``flax`` was already imported."""


class ConfigOptionError(MinilinenError, LookupError, AttributeError):
    """A ``flax.config`` option that does not exist (or is NNX's, out of scope)."""


class ConfigValueError(MinilinenError, ValueError):
    """A ``flax.config`` value minilinen cannot honour."""


class LazyInitError(MinilinenError, ValueError):
    """``lazy_init`` needed the value of an input given only as a shape."""


class TransformNotSupportedError(MinilinenError, NotImplementedError):
    """A lifted-transform option that Flax and JAX no longer support (e.g. reduce_axes)."""


class IncorrectPostInitOverrideError(MinilinenError, AttributeError):
    """A Module subclass overrides ``__post_init__`` without calling ``super().__post_init__()``."""


class InvalidInstanceModuleError(MinilinenError, TypeError):
    """A Module method called on the class instead of an instance."""


FlaxError = MinilinenError
TraceContextError = CursorFindError = TraverseTreeError = NotInMinilinenError
MultipleMethodsCompactError = NotInMinilinenError
ApplyScopeInvalidVariablesTypeError = ApplyScopeInvalidVariablesStructureError = ApplyVariablesError
ScopeParamNotFoundError = ParamNotFoundError
ScopeParamShapeError = ParamShapeError
ScopeVariableNotFoundError = VariableNotFoundError
InvalidScopeError = ScopeInvalidatedError
ModifyScopeVariableError = ImmutableVariableError = CollectionNotMutableError
JaxTransformError = TransformTargetError = TransformError
AssignSubModuleError = SubmoduleOutsideSetupOrCompactError
ReservedModuleAttributeError = ModuleFieldError
CallCompactUnboundModuleError = CallSetupUnboundModuleError = UnboundModuleError
CallUnbindOnUnboundModuleError = CallShareScopeOnUnboundModuleError = UnboundModuleError
MPACheckpointingRequiredError = MPARestoreTargetRequiredError = CheckpointError
MPARestoreDataCorruptedError = CorruptCheckpointError
AlreadyExistsError = InvalidCheckpointError


class LayerNotSupportedError(MinilinenError, NotImplementedError):
    """A layer option that the operation underneath cannot do (Flax has none either)."""


class BatchSizeMismatchError(MinilinenError, AssertionError):
    """``pad_shard_unpad`` got batched arguments of different leading sizes."""


class Fp8DtypeError(LayerConfigError, AssertionError):
    """An fp8 op given a type that is none of the four fp8 formats (Flax asserts there)."""


class AttentionShapeError(LayerInputError, AssertionError):
    """Attention inputs or masks whose shapes don't fit together (Flax asserts there)."""


class NumHeadsError(LayerConfigError, AssertionError):
    """Attention features that the number of heads does not divide (Flax asserts there)."""
