"""Deterministic generator of realistic email threads, for the quoted-text tests and bench/cost.py.

``thread_corpus(count)`` returns ``count`` ThreadMessage: each the last message of a thread, a reply
quoting two to five earlier messages or (one in ten) a forward, written by mail clients of the kinds
people use (Gmail "On ... wrote:" with ``>`` quoting, nested as the thread grows; Outlook's
From:/Sent:/To:/Subject: header blocks, with or without a rule or "-----Original Message-----";
Apple Mail and iOS; a few bottom-posted replies) in English, German, French, Spanish and Dutch, with
signatures ("-- ", a sign-off and a company block, "Sent from my iPhone"). One message in six is HTML
only, as Gmail and Outlook write it. Every message knows its own new sentences, the distinctive
sentences of the earlier messages it quotes and, for a forward, those of the forwarded message.

Message ``n`` depends only on ``n`` (``random.Random(n)``): ``thread_corpus(10) == thread_corpus(99)[:10]``.
Pure stdlib.
"""

from __future__ import annotations

import html
import random
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime

LANGUAGES = ("en", "de", "fr", "es", "nl")
# How each earlier message of a thread was quoted by the one replying to it.
REPLY_STYLES = ("gmail", "gmail_wrapped", "outlook_rule", "outlook_plain", "original_message", "apple")
FORWARD_STYLES = ("gmail_forward", "apple_forward", "outlook_forward")


@dataclass(frozen=True)
class ThreadMessage:
    """One generated message and what a reader knows of it."""

    raw: bytes
    language: str
    style: str  # the quoting style of this message (the last one of its thread)
    html: bool
    is_forward: bool
    new_sentences: tuple[str, ...]  # what the sender wrote in this message
    earlier_sentences: tuple[str, ...]  # distinctive sentences of the messages it quotes
    forwarded_sentences: tuple[str, ...] = ()  # a forward's forwarded message: content, not history
    quoted_messages: int = 0
    signature: str = field(default="", repr=False)


@dataclass(frozen=True)
class _Person:
    first: str
    last: str
    company: str

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"

    @property
    def address(self) -> str:
        local = f"{self.first}.{self.last}".replace(" ", "").lower()
        return _ascii(f"{local}@{self.company.lower()}.example")


@dataclass(frozen=True)
class _Language:
    people: tuple[_Person, ...]
    subjects: tuple[str, ...]
    greeting: str
    sentences: tuple[str, ...]
    sign_offs: tuple[str, ...]
    mobile: str
    wrote: str  # the reply attribution, with {date} {name} {address}
    months: tuple[str, ...]
    days: tuple[str, ...]
    outlook_labels: tuple[str, str, str, str]  # From, Sent, To, Subject
    label_colon: str  # French Outlook writes "De :"
    original_message: str
    reply_prefix: str
    forward_prefix: str
    gmail_forward: str
    apple_forward: str
    titles: tuple[str, ...]
    disclaimer: str
    closings: tuple[str, ...]  # polite lines that say nothing of the matter


_EN = _Language(
    people=(
        _Person("Anna", "Berg", "Northwind"),
        _Person("James", "Walker", "Contoso"),
        _Person("Priya", "Shah", "Fabrikam"),
        _Person("Tom", "Hughes", "Litware"),
        _Person("Emily", "Clarke", "Tailspin"),
    ),
    subjects=(
        "Invoice for March",
        "Delivery schedule",
        "Contract renewal",
        "Server outage",
        "Training dates",
    ),
    greeting="Hi {first},",
    sentences=(
        "Could you send me the updated quote for order {n} by Friday?",
        "The pallets for shipment {n} are still waiting at the Leeds depot.",
        "I have attached the revised figures for account {n}, please check the totals.",
        "Our finance team flagged invoice {n} because the VAT number is missing.",
        "The technician can come on Tuesday morning to look at unit {n}.",
        "We agreed to move the kickoff for project {n} to the second week of May.",
        "Please confirm whether ticket {n} is still blocking your release.",
        "The new price list applies to every order placed after contract {n} renews.",
        "I spoke with legal and clause {n} needs one more round of review.",
        "Can we keep the call about batch {n} short, I have a hard stop at three?",
        "Thanks, the replacement part for unit {n} arrived this morning.",
    ),
    sign_offs=("Best regards,", "Thanks,", "Kind regards,", "Cheers,"),
    mobile="Sent from my iPhone",
    wrote="On {date}, {name} <{address}> wrote:",
    months=("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
    days=("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
    outlook_labels=("From", "Sent", "To", "Subject"),
    label_colon=":",
    original_message="-----Original Message-----",
    reply_prefix="Re: ",
    forward_prefix="Fwd: ",
    gmail_forward="---------- Forwarded message ---------",
    apple_forward="Begin forwarded message:",
    titles=("Account Manager", "Operations Lead", "Head of Procurement", "Support Engineer"),
    disclaimer="This email and any attachments are confidential and intended solely for the addressee. "
    "If you have received it in error, please notify the sender and delete it. Any views expressed are those of the author and not necessarily of the company. Registered in England and Wales, company number 04512345, registered office 1 Market Street, Leeds.",
    closings=(
        "Let me know if you need anything else from our side.",
        "Thanks in advance for your help.",
        "Happy to discuss on a call if that is easier.",
    ),
)

_DE = _Language(
    people=(
        _Person("Jürgen", "Müller", "Brauhaus"),
        _Person("Katrin", "Schneider", "Werkstatt"),
        _Person("Lukas", "Fischer", "Elektro"),
        _Person("Sabine", "Weber", "Logistik"),
    ),
    subjects=(
        "Rechnung März",
        "Liefertermin",
        "Angebot Wartungsvertrag",
        "Störung im Lager",
        "Schulungstermine",
    ),
    greeting="Hallo {first},",
    sentences=(
        "Könnten Sie mir das aktualisierte Angebot für Auftrag {n} bis Freitag schicken?",
        "Die Paletten für Lieferung {n} stehen noch im Lager in Kassel.",
        "Anbei die korrigierten Zahlen für Kundenkonto {n}, bitte prüfen Sie die Summen.",
        "Unsere Buchhaltung hat Rechnung {n} zurückgestellt, weil die Steuernummer fehlt.",
        "Der Techniker kann am Dienstagvormittag nach Anlage {n} sehen.",
        "Wir haben den Projektstart für Vorgang {n} auf die zweite Maiwoche verschoben.",
        "Bitte bestätigen Sie, ob Ticket {n} Ihre Freigabe noch blockiert.",
        "Die neue Preisliste gilt für alle Bestellungen nach Verlängerung von Vertrag {n}.",
        "Danke, das Ersatzteil für Anlage {n} ist heute Morgen angekommen.",
    ),
    sign_offs=("Viele Grüße", "Mit freundlichen Grüßen", "Beste Grüße"),
    mobile="Von meinem iPhone gesendet",
    wrote="Am {date} schrieb {name} <{address}>:",
    months=("Jan.", "Feb.", "März", "Apr.", "Mai", "Juni", "Juli", "Aug.", "Sept.", "Okt.", "Nov.", "Dez."),
    days=("Mo.", "Di.", "Mi.", "Do.", "Fr.", "Sa.", "So."),
    outlook_labels=("Von", "Gesendet", "An", "Betreff"),
    label_colon=":",
    original_message="-----Ursprüngliche Nachricht-----",
    reply_prefix="AW: ",
    forward_prefix="WG: ",
    gmail_forward="---------- Weitergeleitete Nachricht ---------",
    apple_forward="Anfang der weitergeleiteten Nachricht:",
    titles=("Vertrieb Innendienst", "Leitung Einkauf", "Technischer Kundendienst"),
    disclaimer="Diese E-Mail enthält vertrauliche Informationen. Wenn Sie nicht der richtige Adressat sind, "
    "informieren Sie bitte sofort den Absender und vernichten Sie diese E-Mail. Das unerlaubte Kopieren sowie die unbefugte Weitergabe dieser E-Mail sind nicht gestattet. Sitz der Gesellschaft: Kassel, Amtsgericht Kassel HRB 12345, Geschäftsführer: Dr. Hans Becker.",
    closings=(
        "Bei Rückfragen melden Sie sich gerne.",
        "Vielen Dank im Voraus für Ihre Unterstützung.",
        "Gerne können wir das auch kurz telefonisch besprechen.",
    ),
)

_FR = _Language(
    people=(
        _Person("Camille", "Dubois", "Atelier"),
        _Person("Nicolas", "Lefèvre", "Transports"),
        _Person("Élodie", "Moreau", "Conseil"),
        _Person("Julien", "Garnier", "Bureau"),
    ),
    subjects=("Facture de mars", "Planning de livraison", "Renouvellement du contrat", "Panne serveur"),
    greeting="Bonjour {first},",
    sentences=(
        "Pourriez-vous m'envoyer le devis mis à jour pour la commande {n} avant vendredi ?",
        "Les palettes de l'expédition {n} attendent toujours au dépôt de Lyon.",
        "Vous trouverez ci-joint les chiffres corrigés du compte {n}, merci de vérifier les totaux.",
        "Notre service comptable a bloqué la facture {n} car le numéro de TVA manque.",
        "Le technicien peut passer mardi matin pour examiner la machine {n}.",
        "Nous avons décalé le lancement du projet {n} à la deuxième semaine de mai.",
        "Merci de confirmer si le ticket {n} bloque toujours votre mise en production.",
        "Le nouveau tarif s'applique à toute commande passée après le renouvellement du contrat {n}.",
        "Merci, la pièce de rechange pour la machine {n} est arrivée ce matin.",
    ),
    sign_offs=("Cordialement,", "Bien à vous,", "Bonne journée,"),
    mobile="Envoyé de mon iPhone",
    wrote="Le {date}, {name} <{address}> a écrit :",
    months=(
        "janv.",
        "févr.",
        "mars",
        "avr.",
        "mai",
        "juin",
        "juil.",
        "août",
        "sept.",
        "oct.",
        "nov.",
        "déc.",
    ),
    days=("lun.", "mar.", "mer.", "jeu.", "ven.", "sam.", "dim."),
    outlook_labels=("De", "Envoyé", "À", "Objet"),
    label_colon=" :",
    original_message="-----Message d'origine-----",
    reply_prefix="RE : ",
    forward_prefix="TR : ",
    gmail_forward="---------- Message transféré ---------",
    apple_forward="Début du message réexpédié :",
    titles=("Responsable des achats", "Chargée de clientèle", "Service après-vente"),
    disclaimer="Ce message et ses pièces jointes sont confidentiels. Si vous l'avez reçu par erreur, "
    "merci d'en avertir l'expéditeur et de le supprimer. Toute utilisation ou diffusion non autorisée est interdite. SAS au capital de 50 000 euros, RCS Lyon 123 456 789, siège social : 12 rue de la République, 69002 Lyon.",
    closings=(
        "N'hésitez pas à revenir vers moi si besoin.",
        "Merci d'avance pour votre aide.",
        "Nous pouvons en discuter par téléphone si c'est plus simple.",
    ),
)

_ES = _Language(
    people=(
        _Person("Lucía", "García", "Almacenes"),
        _Person("Javier", "Martín", "Ingeniería"),
        _Person("Carmen", "López", "Distribución"),
        _Person("Pablo", "Sánchez", "Servicios"),
    ),
    subjects=(
        "Factura de marzo",
        "Calendario de entregas",
        "Renovación del contrato",
        "Incidencia en el almacén",
    ),
    greeting="Hola {first}:",
    sentences=(
        "¿Podrías enviarme el presupuesto actualizado del pedido {n} antes del viernes?",
        "Los palés del envío {n} siguen esperando en el almacén de Zaragoza.",
        "Te adjunto las cifras corregidas de la cuenta {n}, revisa los totales por favor.",
        "Contabilidad ha retenido la factura {n} porque falta el número de IVA.",
        "El técnico puede pasar el martes por la mañana para revisar el equipo {n}.",
        "Hemos movido el arranque del proyecto {n} a la segunda semana de mayo.",
        "Confírmame si la incidencia {n} sigue bloqueando vuestro lanzamiento.",
        "La nueva tarifa se aplica a todos los pedidos después de renovar el contrato {n}.",
        "Gracias, la pieza de repuesto del equipo {n} llegó esta mañana.",
    ),
    sign_offs=("Un saludo,", "Saludos cordiales,", "Gracias,"),
    mobile="Enviado desde mi iPhone",
    wrote="El {date}, {name} (<{address}>) escribió:",
    months=("ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sept", "oct", "nov", "dic"),
    days=("lun", "mar", "mié", "jue", "vie", "sáb", "dom"),
    outlook_labels=("De", "Enviado el", "Para", "Asunto"),
    label_colon=":",
    original_message="-----Mensaje original-----",
    reply_prefix="RE: ",
    forward_prefix="RV: ",
    gmail_forward="---------- Mensaje reenviado ---------",
    apple_forward="Inicio del mensaje reenviado:",
    titles=("Responsable de compras", "Atención al cliente", "Jefe de almacén"),
    disclaimer="Este mensaje es confidencial y va dirigido exclusivamente a su destinatario. Si lo ha "
    "recibido por error, comuníquelo al remitente y bórrelo. Queda prohibida su copia o distribución sin autorización. Inscrita en el Registro Mercantil de Zaragoza, tomo 1234, folio 56, hoja Z-7890, CIF B12345678.",
    closings=(
        "Si necesitas algo más, dímelo.",
        "Gracias de antemano por tu ayuda.",
        "Si lo prefieres, lo comentamos por teléfono.",
    ),
)

_NL = _Language(
    people=(
        _Person("Sanne", "de Vries", "Bouwbedrijf"),
        _Person("Daan", "Jansen", "Transport"),
        _Person("Lotte", "Bakker", "Adviesgroep"),
        _Person("Bram", "Visser", "Installatie"),
    ),
    subjects=("Factuur maart", "Leverplanning", "Verlenging contract", "Storing in het magazijn"),
    greeting="Hoi {first},",
    sentences=(
        "Kun je mij de bijgewerkte offerte voor order {n} vóór vrijdag sturen?",
        "De pallets voor zending {n} staan nog in het depot in Utrecht.",
        "In de bijlage vind je de gecorrigeerde cijfers voor rekening {n}, wil je de totalen controleren?",
        "Onze administratie heeft factuur {n} tegengehouden omdat het btw-nummer ontbreekt.",
        "De monteur kan dinsdagochtend langskomen om naar installatie {n} te kijken.",
        "We hebben de start van project {n} verschoven naar de tweede week van mei.",
        "Laat je weten of ticket {n} jullie release nog steeds blokkeert?",
        "De nieuwe prijslijst geldt voor alle orders na de verlenging van contract {n}.",
        "Bedankt, het vervangende onderdeel voor installatie {n} is vanochtend binnengekomen.",
    ),
    sign_offs=("Met vriendelijke groet,", "Groeten,", "Groet,"),
    mobile="Verzonden vanaf mijn iPhone",
    wrote="Op {date} schreef {name} <{address}>:",
    months=("jan", "feb", "mrt", "apr", "mei", "jun", "jul", "aug", "sep", "okt", "nov", "dec"),
    days=("ma", "di", "wo", "do", "vr", "za", "zo"),
    outlook_labels=("Van", "Verzonden", "Aan", "Onderwerp"),
    label_colon=":",
    original_message="-----Oorspronkelijk bericht-----",
    reply_prefix="Re: ",
    forward_prefix="Doorst: ",
    gmail_forward="---------- Doorgestuurd bericht ---------",
    apple_forward="Begin doorgestuurd bericht:",
    titles=("Projectleider", "Inkoper", "Klantenservice"),
    disclaimer="Dit bericht is uitsluitend bestemd voor de geadresseerde. Heeft u dit bericht per vergissing "
    "ontvangen, laat het de afzender weten en verwijder het. Het is niet toegestaan dit bericht zonder toestemming te kopiëren of te verspreiden. Ingeschreven bij de Kamer van Koophandel onder nummer 12345678, statutair gevestigd te Utrecht.",
    closings=(
        "Laat het gerust weten als je nog iets nodig hebt.",
        "Alvast bedankt voor je hulp.",
        "We kunnen het ook even telefonisch bespreken als dat makkelijker is.",
    ),
)

_LANGUAGES = {"en": _EN, "de": _DE, "fr": _FR, "es": _ES, "nl": _NL}
_START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@dataclass
class _Written:
    """One message of a thread as its sender wrote it."""

    sender: _Person
    recipient: _Person
    when: datetime
    subject: str
    sentences: tuple[str, ...]
    text: str  # greeting, sentences, sign-off and signature
    body: str  # text and everything it quotes


def thread_corpus(count: int) -> list[ThreadMessage]:
    return [thread_message(n) for n in range(count)]


def thread_message(n: int) -> ThreadMessage:
    rng = random.Random(n)
    language = LANGUAGES[n % len(LANGUAGES)]
    lang = _LANGUAGES[language]
    numbers = iter(rng.sample(range(10_000, 99_999), 40))  # distinct within the thread: sentences stay apart
    people = rng.sample(lang.people, 2)
    subject = rng.choice(lang.subjects)
    earlier: list[_Written] = []
    when = _START + timedelta(days=n % 300, minutes=rng.randrange(600))
    quoted = rng.randint(2, 5)
    for index in range(quoted):
        sender, recipient = people[index % 2], people[(index + 1) % 2]
        prefix = lang.reply_prefix if index else ""
        written = _write(rng, lang, numbers, sender, recipient, when, prefix + subject)
        if earlier:
            written.body = written.text + "\n\n" + _quote(rng, lang, rng.choice(REPLY_STYLES), earlier[-1])
        earlier.append(written)
        when += timedelta(hours=rng.randint(1, 40), minutes=rng.randrange(60))
    is_forward = n % 10 == 9
    sender = people[quoted % 2]
    if is_forward:
        return _forward(rng, n, lang, language, numbers, earlier, sender, when)
    final = _write(rng, lang, numbers, sender, people[(quoted + 1) % 2], when, lang.reply_prefix + subject)
    as_html = n % 6 == 5  # as Gmail and Outlook write HTML
    style = rng.choice(("gmail", "outlook_rule") if as_html else (*REPLY_STYLES, "bottom"))
    if style == "bottom":  # a reply written below what it quotes, as on mailing lists
        body = _quote(rng, lang, "gmail", earlier[-1]) + "\n\n" + final.text
    else:
        body = final.text + "\n\n" + _quote(rng, lang, style, earlier[-1])
    return ThreadMessage(
        raw=_raw(n, final, body, earlier[-1], as_html, style),
        language=language,
        style=style,
        html=as_html,
        is_forward=False,
        new_sentences=final.sentences,
        earlier_sentences=tuple(s for w in earlier for s in w.sentences),
        quoted_messages=quoted,
        signature=final.text.split("\n\n")[-1],
    )


def _forward(
    rng: random.Random,
    n: int,
    lang: _Language,
    language: str,
    numbers: Iterator[int],
    earlier: list[_Written],
    sender: _Person,
    when: datetime,
) -> ThreadMessage:
    """A short note above a whole earlier thread, sent on to a colleague who has not seen it."""
    colleague = next(p for p in lang.people if p not in (earlier[-1].sender, earlier[-1].recipient))
    note = (rng.choice(lang.sentences).format(n=next(numbers)),)
    text = "\n\n".join([lang.greeting.format(first=colleague.first), *note, _signature(rng, lang, sender)])
    forwarded = earlier[-1]
    style = rng.choice(FORWARD_STYLES)
    subject = lang.forward_prefix + forwarded.subject
    final = _Written(sender, colleague, when, subject, note, text, "")
    body = text + "\n\n" + _quote(rng, lang, style, forwarded)
    return ThreadMessage(
        raw=_raw(n, final, body, None, False, style),
        language=language,
        style=style,
        html=False,
        is_forward=True,
        new_sentences=note,
        earlier_sentences=(),
        forwarded_sentences=forwarded.sentences,
        quoted_messages=len(earlier),
    )


def _write(
    rng: random.Random,
    lang: _Language,
    numbers: Iterator[int],
    sender: _Person,
    recipient: _Person,
    when: datetime,
    subject: str,
) -> _Written:
    sentences = tuple(s.format(n=next(numbers)) for s in rng.sample(lang.sentences, rng.randint(2, 5)))
    if len(sentences) > 1 and rng.random() < 0.25:  # a list, as people write one
        lines = [lang.greeting.format(first=recipient.first), "\n".join(f"- {s}" for s in sentences)]
    else:
        lines = [lang.greeting.format(first=recipient.first), " ".join(sentences[:2]), *sentences[2:]]
    if rng.random() < 0.5:
        lines.append(rng.choice(lang.closings))
    text = "\n\n".join([*lines, _signature(rng, lang, sender)])
    return _Written(sender, recipient, when, subject, sentences, text, text)


def _signature(rng: random.Random, lang: _Language, sender: _Person) -> str:
    kind = rng.choice(("dashes", "block", "block", "mobile", "name"))
    sign_off = rng.choice(lang.sign_offs)
    if kind == "mobile":
        return f"{sign_off}\n{sender.first}\n\n{lang.mobile}"
    if kind == "name":
        return f"{sign_off}\n{sender.first}"
    card = (
        f"{sender.name}\n{rng.choice(lang.titles)} | {sender.company} GmbH\n"
        f"+49 30 {rng.randint(1000000, 9999999)}\nwww.{_ascii(sender.company.lower())}.example"
    )
    if kind == "dashes":
        return f"{sign_off}\n{sender.first}\n\n-- \n{card}"
    return f"{sign_off}\n\n{card}\n\n{lang.disclaimer}"


def _quoted_line(line: str) -> str:
    return ">" + line if line.startswith(">") else f"> {line}" if line else ">"


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _date_line(lang: _Language, when: datetime) -> str:
    day = lang.days[when.weekday()]
    return f"{day}, {when.day} {lang.months[when.month - 1]} {when.year} {when:%H:%M}"


def _quote(rng: random.Random, lang: _Language, style: str, earlier: _Written) -> str:
    """The earlier message (and all it quotes) as a mail client puts it below or above a reply."""
    who = {"name": earlier.sender.name, "address": earlier.sender.address}
    attribution = lang.wrote.format(date=_date_line(lang, earlier.when), **who)
    labels = [f"{label}{lang.label_colon}" for label in lang.outlook_labels]
    headers = "\n".join(
        f"{label} {value}"
        for label, value in zip(
            labels,
            (
                f"{earlier.sender.name} <{earlier.sender.address}>",
                _date_line(lang, earlier.when),
                f"{earlier.recipient.name} <{earlier.recipient.address}>",
                earlier.subject,
            ),
            strict=True,
        )
    )
    if style in ("gmail", "gmail_wrapped", "apple"):
        if style == "gmail_wrapped":  # Gmail wraps a long attribution at 76 columns
            cut = attribution.rfind(" ", 0, 70)
            attribution = attribution[:cut] + "\n" + attribution[cut + 1 :]
        quoted = "\n".join(_quoted_line(line) for line in earlier.body.split("\n"))
        return f"{attribution}\n\n{quoted}" if style == "apple" else f"{attribution}\n{quoted}"
    if style == "outlook_rule":
        return f"________________________________\n{headers}\n\n{earlier.body}"
    if style in ("outlook_plain", "outlook_forward"):
        rule = "________________________________\n" if style == "outlook_forward" else ""
        return f"{rule}{headers}\n\n{earlier.body}"
    if style == "original_message":
        return f"{lang.original_message}\n{headers}\n\n{earlier.body}"
    forward_headers = headers.replace(labels[1], "Date:", 1)
    if style == "gmail_forward":
        return f"{lang.gmail_forward}\n{forward_headers}\n\n\n{earlier.body}"
    if style == "apple_forward":
        return f"{lang.apple_forward}\n\n{forward_headers}\n\n{earlier.body}"
    raise ValueError(style)


def _raw(n: int, final: _Written, body: str, replied: _Written | None, as_html: bool, style: str) -> bytes:
    message = EmailMessage()
    message["From"] = f"{final.sender.name} <{final.sender.address}>"
    message["To"] = f"{final.recipient.name} <{final.recipient.address}>"
    message["Subject"] = final.subject
    message["Date"] = format_datetime(final.when)
    message["Message-ID"] = f"<thread-{n}@corpus.example>"
    if replied is not None:
        message["In-Reply-To"] = f"<thread-{n}-parent@corpus.example>"
        message["References"] = f"<thread-{n}-root@corpus.example> <thread-{n}-parent@corpus.example>"
    if as_html:
        message.set_content(_html(body, style), subtype="html")
    else:
        message.set_content(body)
    return message.as_bytes()


def _html(body: str, style: str) -> str:
    """The same text as Gmail (a gmail_quote blockquote) or Outlook (a bordered header block) writes it."""
    marker = "________________________________\n" if style == "outlook_rule" else None
    split_at = body.find(marker) if marker else _attribution_start(body)
    new, rest = body[:split_at], body[split_at:]

    def paragraphs(text: str) -> str:
        return "".join(
            f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in text.strip().split("\n\n")
        )

    if style == "outlook_rule":
        header_text, _, old = rest.removeprefix(marker or "").partition("\n\n")
        header_html = "<br>".join(
            f"<b>{html.escape(label)}:</b> {html.escape(value)}"
            for label, _, value in (line.partition(": ") for line in header_text.split("\n"))
        )
        return (
            f'<html><body><div class="WordSection1">{paragraphs(new)}'
            '<div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0in 0in 0in">'
            f"<p>{header_html}</p></div>{paragraphs(old)}</div></body></html>"
        )
    attribution, _, old = rest.partition("\n")
    old = "\n".join(line.removeprefix(">").removeprefix(" ") for line in old.split("\n"))
    return (
        f'<html><body><div dir="ltr">{paragraphs(new)}</div><br><div class="gmail_quote">'
        f'<div dir="ltr" class="gmail_attr">{html.escape(attribution)}<br></div>'
        '<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;border-left:1px solid '
        f'rgb(204,204,204);padding-left:1ex">{paragraphs(old)}</blockquote></div></body></html>'
    )


def _attribution_start(body: str) -> int:
    """Where the first "> " quoted line's attribution starts (the line before it)."""
    lines = body.split("\n")
    first_quoted = next(i for i, line in enumerate(lines) if line.startswith(">"))
    return len("\n".join(lines[: first_quoted - 1])) + 1
