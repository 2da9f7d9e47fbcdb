"""In-memory state and operation logic of the sandbox backend, independent of HTTP.

`SandboxBackend.handle` answers the platform's PHP operations (SPEC §5) from a `SandboxSeed`;
`FaultInjector` holds the faults the HTTP layer (`server.py`) applies before or after it.
"""

from __future__ import annotations

import copy
import unicodedata
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from citas.clock import Clock, system_clock

JsonDict = dict[str, Any]
UrlKind = Literal["calendar", "info"]

DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
DATE_FORMAT = "%Y-%m-%d"
FIRST_EVENT_ID = 1000
MEETING_URL_PREFIX = "https://meet.sandbox.citas.local/"
SLOT_TAKEN_ERROR = "El horario ya no está disponible"
UNKNOWN_BUSINESS_ERROR = "Empresa no encontrada"
UNKNOWN_EVENT_ERROR = "Evento no encontrado"
ALREADY_CANCELLED_ERROR = "El evento ya está cancelado"
SUGGESTION_HORIZON_DAYS = 14
SUGGESTION_STEP = timedelta(minutes=30)
DAY_KEYS = ("lunes", "martes", "miercoles", "jueves", "viernes", "sabado", "domingo")
"""Day keys of `horario`, indexed by `date.weekday()`."""

_URL_NAMES: dict[UrlKind, str] = {"calendar": "ws_calendario.php", "info": "ws_informacion_ia.php"}


# --------------------------------------------------------------------------- seed models


class _SeedModel(BaseModel):
    # Typos in a seed (e.g. "miércoles") must fail loudly rather than silently mean "closed".
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimeRange(_SeedModel):
    """An opening range of one day, `inicio` < `fin`, both "HH:MM"."""

    inicio: str = Field(pattern=r"^\d{2}:\d{2}$")
    fin: str = Field(pattern=r"^\d{2}:\d{2}$")

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.start >= self.end:
            raise ValueError(f"el rango {self.inicio}-{self.fin} no termina después de empezar")
        return self

    @property
    def start(self) -> time:
        return time.fromisoformat(self.inicio)

    @property
    def end(self) -> time:
        return time.fromisoformat(self.fin)


class WeeklyHours(_SeedModel):
    """Opening ranges per day of the week; a missing or empty day is closed."""

    lunes: list[TimeRange] = []
    martes: list[TimeRange] = []
    miercoles: list[TimeRange] = []
    jueves: list[TimeRange] = []
    viernes: list[TimeRange] = []
    sabado: list[TimeRange] = []
    domingo: list[TimeRange] = []

    def for_day(self, day: date) -> list[TimeRange]:
        ranges: list[TimeRange] = getattr(self, DAY_KEYS[day.weekday()])
        return ranges


class FaqEntry(_SeedModel):
    pregunta: str
    respuesta: str


class CatalogItem(_SeedModel):
    """A service or product as the backend lists it."""

    id: int
    nombre: str
    precio: float
    descripcion: str = ""
    duracion_minutos: int | None = Field(None, ge=5, le=600)  # a service's own length

    @model_serializer(mode="wrap")
    def _without_unset_length(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Written only when set: recordings and answers keep their shape for other items.
        data: dict[str, Any] = handler(self)
        if data.get("duracion_minutos") is None:
            data.pop("duracion_minutos", None)
        return data


def _parse_local_datetime(value: object) -> datetime:
    """Accept only the backend's wire format, as the PHP services do."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("se esperaba un texto con formato YYYY-MM-DD HH:MM:SS")
    try:
        return datetime.strptime(value, DATETIME_FORMAT)
    except ValueError:
        raise ValueError(f"formato esperado YYYY-MM-DD HH:MM:SS, llegó {value!r}") from None


def _parse_local_date(value: object) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("se esperaba un texto con formato YYYY-MM-DD")
    try:
        return datetime.strptime(value, DATE_FORMAT).date()
    except ValueError:
        raise ValueError(f"formato esperado YYYY-MM-DD, llegó {value!r}") from None


LocalDateTime = Annotated[
    datetime,
    BeforeValidator(_parse_local_datetime),
    PlainSerializer(lambda moment: moment.strftime(DATETIME_FORMAT), when_used="json"),
]
"""A naive local datetime of the business, "YYYY-MM-DD HH:MM:SS" on the wire."""
LocalDate = Annotated[
    date,
    BeforeValidator(_parse_local_date),
    PlainSerializer(lambda day: day.strftime(DATE_FORMAT), when_used="json"),
]


class SeedEvent(_SeedModel):
    """A busy slot that exists before the sandbox starts."""

    usuario_id: int | None = None
    fecha_inicio: LocalDateTime
    fecha_fin: LocalDateTime
    titulo: str = "Ocupado"
    cliente_telefono: str | None = Field(None, exclude_if=lambda value: value is None)
    """The customer's phone: `LISTAR_EVENTOS_CLIENTE` finds the event by it."""


class Business(_SeedModel):
    """One business of the platform, as the sandbox knows it."""

    nombre: str
    zona_horaria: str
    contexto: str = ""
    preguntas: list[FaqEntry] = []
    horario: WeeklyHours = WeeklyHours()
    servicios: list[CatalogItem] = []
    productos: list[CatalogItem] = []
    eventos: list[SeedEvent] = []

    @field_validator("zona_horaria")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"zona horaria desconocida: {value!r}") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.zona_horaria)


class SandboxSeed(_SeedModel):
    """The sandbox's demo data: businesses keyed by `id_empresa`."""

    empresas: dict[int, Business]

    @classmethod
    def load(cls, path: Path | None = None) -> SandboxSeed:
        """Read a seed file; without `path`, the bundled `seed.json`."""
        if path is None:
            text = (
                resources.files("citas.sandbox").joinpath("seed.json").read_text(encoding="utf-8")
            )
        else:
            text = path.read_text(encoding="utf-8")
        return cls.model_validate_json(text)


# --------------------------------------------------------------------------- events


@dataclass
class Event:
    """A calendar event held by the sandbox; dates are naive local times of the business."""

    id_evento: int
    id_empresa: int
    usuario_id: int | None
    titulo: str
    descripcion: str
    fecha_inicio: datetime
    fecha_fin: datetime
    cliente_nombre: str
    cliente_correo: str
    cliente_telefono: str | None
    idempotency_key: str | None
    url: str
    estado: str = "confirmado"  # or "cancelado": a cancelled event frees its slot
    change_keys: list[str] = field(default_factory=list)
    """Idempotency keys of the cancellations and reschedules applied to this event."""

    def overlaps(self, start: datetime, end: datetime) -> bool:
        """Half-open intervals: an event ending at 10:00 leaves 10:00 free."""
        return self.fecha_inicio < end and start < self.fecha_fin


# --------------------------------------------------------------------------- faults

FaultKind = Literal["latency", "status", "malformed_json", "connection_reset", "commit_then_late"]
ANY_OPERATION = "*"
"""Operation name that makes a fault apply to every operation without a fault of its own."""


@dataclass(frozen=True)
class Fault:
    """One misbehaviour of the backend, applied by the HTTP layer.

    `seconds` is the delay of `latency` and `commit_then_late`; `http_status` and `body` are the
    answer of `status`, and `body` the text of `malformed_json` (None: a sensible default).
    """

    kind: FaultKind
    seconds: float = 0.0
    http_status: int = 503
    body: str | None = None


@dataclass
class _Armed:
    fault: Fault
    remaining: int | None  # None: until cleared


@dataclass
class FaultInjector:
    """Faults per operation (codOpe), consumed in the order they were added."""

    _queues: dict[str, deque[_Armed]] = field(default_factory=dict)
    triggered: list[str] = field(default_factory=list)
    """The operation of every fault applied so far, in order."""

    def add(self, op: str, fault: Fault, *, times: int | None = 1) -> None:
        """Apply `fault` to the next `times` requests of `op`; `times=None` until cleared."""
        if times is not None and times < 1:
            raise ValueError("times must be a positive number or None")
        self._queues.setdefault(op, deque()).append(_Armed(fault, times))

    def clear(self, op: str | None = None) -> None:
        """Remove the faults of `op`, or all of them (the `triggered` record is kept)."""
        if op is None:
            self._queues.clear()
        else:
            self._queues.pop(op, None)

    def take(self, op: str) -> Fault | None:
        """The fault for this request of `op`, if any, counting it as triggered."""
        queue = self._queues.get(op) or self._queues.get(ANY_OPERATION)
        if not queue:
            return None
        armed = queue[0]
        if armed.remaining is not None:
            armed.remaining -= 1
            if armed.remaining == 0:
                queue.popleft()
        self.triggered.append(op)
        return armed.fault

    def pending(self, op: str | None = None) -> int:
        """How many armed fault entries remain (for `op`, or in all)."""
        queues = self._queues.values() if op is None else [self._queues.get(op, deque())]
        return sum(len(q) for q in queues)


# --------------------------------------------------------------------------- requests


class _Rejected(Exception):
    """A request the backend answers with `success: false` and this message."""


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id_empresa: int


class _SlotRequest(_Request):
    usuario_id: int | None = None
    fecha_inicio: LocalDateTime
    fecha_fin: LocalDateTime

    @model_validator(mode="after")
    def _ordered(self) -> _SlotRequest:
        if self.fecha_fin <= self.fecha_inicio:
            raise ValueError("fecha_fin debe ser posterior a fecha_inicio")
        return self


class _CreateEventRequest(_SlotRequest):
    titulo: str
    descripcion: str = ""
    cliente_nombre: str = Field(min_length=1)
    # Empty when the business does not ask for it (`correo_obligatorio: false`).
    cliente_correo: str = ""
    cliente_telefono: str | None = None
    idempotency_key: str | None = None


class _CustomerEventsRequest(_Request):
    usuario_id: int | None = None
    cliente_telefono: str = Field(min_length=6)
    desde: LocalDateTime | None = None

    @field_validator("desde", mode="before")
    @classmethod
    def _date_or_datetime(cls, value: object) -> object:
        # `desde` may be a day ("2026-12-01") or a moment ("2026-12-01 09:00:00").
        if isinstance(value, str) and len(value.strip()) == 10:
            return f"{value.strip()} 00:00:00"
        return value


class _CancelRequest(_Request):
    usuario_id: int | None = None
    id_evento: int
    motivo: str = ""
    idempotency_key: str = Field(min_length=1)


class _RescheduleRequest(_SlotRequest):
    id_evento: int
    idempotency_key: str = Field(min_length=1)


class _SuggestRequest(_Request):
    usuario_id: int | None = None
    fecha: LocalDate
    duracion_minutos: int = Field(ge=5, le=720)
    cantidad: int = Field(ge=1, le=50)


class _SearchRequest(_Request):
    busqueda: str
    limite: int = Field(default=10, ge=1, le=100)


_RequestT = TypeVar("_RequestT", bound=_Request)


def _parse(model: type[_RequestT], body: JsonDict) -> _RequestT:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise _Rejected(f"Parámetros inválidos: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    """One short Spanish line per invalid field, so a client log says what was wrong."""
    parts = []
    for error in exc.errors(include_url=False):
        name = ".".join(str(part) for part in error["loc"]) or "cuerpo"
        if error["type"] == "missing":
            parts.append(f"falta {name}")
        else:
            reason = error["msg"].removeprefix("Value error, ")
            parts.append(f"{name} inválido ({reason})")
    return "; ".join(parts)


# --------------------------------------------------------------------------- backend

_Handler = Callable[[JsonDict], JsonDict]


class SandboxBackend:
    """The platform's backend API (SPEC §5) over in-memory state; `handle` never raises."""

    def __init__(
        self, seed: SandboxSeed, *, clock: Clock | None = None, record_calls: bool = True
    ) -> None:
        """`record_calls=False` for a long-running sandbox (`citas serve --sandbox`): `calls`
        then stays empty instead of growing with every request."""
        self.seed = seed
        self.record_calls = record_calls
        self.clock: Clock = clock or system_clock
        self.events: list[Event] = []
        self.calls: list[tuple[str, JsonDict]] = []
        self.faults = FaultInjector()
        self._next_id = FIRST_EVENT_ID
        self._operations: dict[str, tuple[UrlKind, _Handler]] = {
            "CONSULTAR_DISPONIBILIDAD": ("calendar", self._check_availability),
            "SUGERIR_HORARIOS": ("calendar", self._suggest_slots),
            "CREAR_EVENTO": ("calendar", self._create_event),
            "LISTAR_EVENTOS_CLIENTE": ("calendar", self._customer_events),
            "CANCELAR_EVENTO": ("calendar", self._cancel_event),
            "REPROGRAMAR_EVENTO": ("calendar", self._reschedule_event),
            "OBTENER_HORARIO_REUNIONES": ("info", self._opening_hours),
            "OBTENER_CONTEXTO_NEGOCIO": ("info", self._business_context),
            "OBTENER_PREGUNTAS_FRECUENTES": ("info", self._faqs),
            "OBTENER_SERVICIOS_CITAS": ("info", self._services),
            "OBTENER_PRODUCTOS_CITAS": ("info", self._products),
            "BUSCAR_PRODUCTOS_SERVICIOS_CITAS": ("info", self._search),
        }
        self._load_seed_events()

    # ---- entry points

    def handle(self, url_kind: UrlKind, body: JsonDict) -> JsonDict:
        """Record the request and answer it as the PHP service at `url_kind` would."""
        self.record_call(body)
        op = body.get("codOpe")
        operation = self._operations.get(op) if isinstance(op, str) else None
        if operation is None:
            return _failure(f"Operación no soportada: {op!r}" if op else "Falta codOpe")
        expected_kind, handler = operation
        if expected_kind != url_kind:
            return _failure(f"La operación {op} no se atiende en {_URL_NAMES[url_kind]}")
        try:
            return handler(body)
        except _Rejected as exc:
            return _failure(str(exc))

    def record_call(self, body: JsonDict) -> None:
        """Remember a received request; faults that skip `handle` still call this."""
        if not self.record_calls:
            return
        op = body.get("codOpe")
        self.calls.append((op if isinstance(op, str) else "", copy.deepcopy(body)))

    def calls_of(self, op: str) -> list[JsonDict]:
        """The bodies received for one operation, in order."""
        return [body for name, body in self.calls if name == op]

    def _business(self, id_empresa: int) -> Business:
        found = self.seed.empresas.get(id_empresa)
        if found is None:
            raise _Rejected(UNKNOWN_BUSINESS_ERROR)
        return found

    # ---- calendar operations

    def _check_availability(self, body: JsonDict) -> JsonDict:
        req = _parse(_SlotRequest, body)
        self._business(req.id_empresa)
        free = self._is_free(req.id_empresa, req.usuario_id, req.fecha_inicio, req.fecha_fin)
        return {"success": True, "disponible": free}

    def _suggest_slots(self, body: JsonDict) -> JsonDict:
        req = _parse(_SuggestRequest, body)
        business = self._business(req.id_empresa)
        duration = timedelta(minutes=req.duracion_minutos)
        found: list[JsonDict] = []
        for start in self._candidate_starts(business, req.fecha, duration):
            end = start + duration
            if self._is_free(req.id_empresa, req.usuario_id, start, end):
                found.append({"fecha_inicio": _fmt(start), "fecha_fin": _fmt(end)})
                if len(found) == req.cantidad:
                    break
        return {"success": True, "horarios": found}

    def _create_event(self, body: JsonDict) -> JsonDict:
        req = _parse(_CreateEventRequest, body)
        self._business(req.id_empresa)
        previous = self._event_with_key(req.id_empresa, req.idempotency_key)
        if previous is not None:
            return _created(previous)
        if not self._is_free(req.id_empresa, req.usuario_id, req.fecha_inicio, req.fecha_fin):
            raise _Rejected(SLOT_TAKEN_ERROR)
        event = self._commit(
            req.id_empresa,
            req.usuario_id,
            req.fecha_inicio,
            req.fecha_fin,
            titulo=req.titulo,
            descripcion=req.descripcion,
            cliente_nombre=req.cliente_nombre,
            cliente_correo=req.cliente_correo,
            cliente_telefono=req.cliente_telefono,
            idempotency_key=req.idempotency_key,
        )
        return _created(event)

    def _customer_events(self, body: JsonDict) -> JsonDict:
        req = _parse(_CustomerEventsRequest, body)
        self._business(req.id_empresa)
        phone = _digits(req.cliente_telefono)
        found = [
            event
            for event in self.events
            if event.id_empresa == req.id_empresa
            and event.usuario_id == req.usuario_id
            and event.cliente_telefono is not None
            and _digits(event.cliente_telefono) == phone
            and (req.desde is None or event.fecha_inicio >= req.desde)
        ]
        found.sort(key=lambda event: event.fecha_inicio)
        return {"success": True, "eventos": [_listed(event) for event in found]}

    def _cancel_event(self, body: JsonDict) -> JsonDict:
        req = _parse(_CancelRequest, body)
        self._business(req.id_empresa)
        event = self._event(req.id_empresa, req.usuario_id, req.id_evento)
        if event.estado == "cancelado":
            if req.idempotency_key in event.change_keys:
                return {"success": True}
            raise _Rejected(ALREADY_CANCELLED_ERROR)
        event.estado = "cancelado"
        event.change_keys.append(req.idempotency_key)
        return {"success": True}

    def _reschedule_event(self, body: JsonDict) -> JsonDict:
        req = _parse(_RescheduleRequest, body)
        self._business(req.id_empresa)
        event = self._event(req.id_empresa, req.usuario_id, req.id_evento)
        if req.idempotency_key in event.change_keys:
            return _created(event)
        if event.estado == "cancelado":
            raise _Rejected(ALREADY_CANCELLED_ERROR)
        # Atomic: the new slot must be free of every other event, or nothing changes.
        if not self._is_free(
            req.id_empresa, req.usuario_id, req.fecha_inicio, req.fecha_fin, ignore=event
        ):
            raise _Rejected(SLOT_TAKEN_ERROR)
        event.fecha_inicio, event.fecha_fin = req.fecha_inicio, req.fecha_fin
        event.change_keys.append(req.idempotency_key)
        return _created(event)

    # ---- information operations

    def _opening_hours(self, body: JsonDict) -> JsonDict:
        business = self._business(_parse(_Request, body).id_empresa)
        return {"success": True, "horario": business.horario.model_dump()}

    def _business_context(self, body: JsonDict) -> JsonDict:
        business = self._business(_parse(_Request, body).id_empresa)
        return {"success": True, "contexto": business.contexto}

    def _faqs(self, body: JsonDict) -> JsonDict:
        business = self._business(_parse(_Request, body).id_empresa)
        return {"success": True, "preguntas": [faq.model_dump() for faq in business.preguntas]}

    def _services(self, body: JsonDict) -> JsonDict:
        business = self._business(_parse(_Request, body).id_empresa)
        return {
            "success": True,
            "servicios": [item.model_dump() for item in business.servicios],
        }

    def _products(self, body: JsonDict) -> JsonDict:
        business = self._business(_parse(_Request, body).id_empresa)
        return {
            "success": True,
            "productos": [item.model_dump() for item in business.productos],
        }

    def _search(self, body: JsonDict) -> JsonDict:
        req = _parse(_SearchRequest, body)
        business = self._business(req.id_empresa)
        words = _normalize(req.busqueda).split()
        catalog = [("servicio", item) for item in business.servicios] + [
            ("producto", item) for item in business.productos
        ]
        results = [
            {"id": item.id, "tipo": tipo, **item.model_dump(exclude={"id"})}
            for tipo, item in catalog
            if all(word in _normalize(f"{item.nombre} {item.descripcion}") for word in words)
        ]
        return {"success": True, "resultados": results[: req.limite]}

    # ---- helpers

    def _load_seed_events(self) -> None:
        for id_empresa, business in self.seed.empresas.items():
            for busy in business.eventos:
                self._commit(
                    id_empresa,
                    busy.usuario_id,
                    busy.fecha_inicio,
                    busy.fecha_fin,
                    titulo=busy.titulo,
                    cliente_telefono=busy.cliente_telefono,
                )

    def _commit(
        self,
        id_empresa: int,
        usuario_id: int | None,
        fecha_inicio: datetime,
        fecha_fin: datetime,
        *,
        titulo: str,
        descripcion: str = "",
        cliente_nombre: str = "",
        cliente_correo: str = "",
        cliente_telefono: str | None = None,
        idempotency_key: str | None = None,
    ) -> Event:
        event_id = self._next_id
        self._next_id += 1
        event = Event(
            id_evento=event_id,
            id_empresa=id_empresa,
            usuario_id=usuario_id,
            titulo=titulo,
            descripcion=descripcion,
            fecha_inicio=fecha_inicio,
            fecha_fin=fecha_fin,
            cliente_nombre=cliente_nombre,
            cliente_correo=cliente_correo,
            cliente_telefono=cliente_telefono,
            idempotency_key=idempotency_key,
            url=f"{MEETING_URL_PREFIX}{event_id}",
        )
        self.events.append(event)
        return event

    def _is_free(
        self,
        id_empresa: int,
        usuario_id: int | None,
        start: datetime,
        end: datetime,
        *,
        ignore: Event | None = None,
    ) -> bool:
        return not any(
            event.id_empresa == id_empresa
            and event.usuario_id == usuario_id
            and event.estado != "cancelado"
            and event is not ignore
            and event.overlaps(start, end)
            for event in self.events
        )

    def _event(self, id_empresa: int, usuario_id: int | None, id_evento: int) -> Event:
        for event in self.events:
            if (
                event.id_evento == id_evento
                and event.id_empresa == id_empresa
                and event.usuario_id == usuario_id
            ):
                return event
        raise _Rejected(UNKNOWN_EVENT_ERROR)

    def _event_with_key(self, id_empresa: int, key: str | None) -> Event | None:
        # Keys are scoped per business so one tenant can never receive another's event.
        if key is None:
            return None
        for event in self.events:
            if event.id_empresa == id_empresa and event.idempotency_key == key:
                return event
        return None

    def _candidate_starts(
        self, business: Business, first_day: date, duration: timedelta
    ) -> Iterator[datetime]:
        """Slot starts inside opening hours, from `first_day` on, not before now, in order."""
        now = self.clock().astimezone(UTC)
        step = min(SUGGESTION_STEP, duration)
        for offset in range(SUGGESTION_HORIZON_DAYS):
            day = first_day + timedelta(days=offset)
            for opening in business.horario.for_day(day):
                start = datetime.combine(day, opening.start)
                close = datetime.combine(day, opening.end)
                while start + duration <= close:
                    if _exists(start, business.zone) and _to_utc(start, business.zone) >= now:
                        yield start
                    start += step


def _exists(local: datetime, zone: ZoneInfo) -> bool:
    """False for wall times skipped by a DST jump (e.g. Santiago's spring-forward hour)."""
    aware = local.replace(tzinfo=zone)
    return aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == local


def _to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    # Compared in UTC: aware datetimes sharing one tzinfo compare as wall times, ignoring DST.
    return local.replace(tzinfo=zone).astimezone(UTC)


def _normalize(text: str) -> str:
    """Case- and accent-insensitive form: 'Evaluación' and 'EVALUACION' compare equal."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _fmt(moment: datetime) -> str:
    return moment.strftime(DATETIME_FORMAT)


def _created(event: Event) -> JsonDict:
    return {"success": True, "id_evento": event.id_evento, "url": event.url}


def _listed(event: Event) -> JsonDict:
    return {
        "id_evento": event.id_evento,
        "fecha_inicio": _fmt(event.fecha_inicio),
        "fecha_fin": _fmt(event.fecha_fin),
        "titulo": event.titulo,
        "url": event.url,
        "estado": event.estado,
    }


def _digits(phone: str) -> str:
    return "".join(ch for ch in phone if ch.isdigit())


def _failure(message: str) -> JsonDict:
    return {"success": False, "error": message}
