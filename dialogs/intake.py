"""The intake conversation, as data.

Step ids and choice ids are a public contract (frontends, analytics, stored conversations):
never rename one. Add a new step and keep old conversations working instead.
The words follow the regulator's facts (shared/mission) in our own plain English; every
string is a gettext message id, extracted by Babel (`T` and `P` are the keywords).
"""

from __future__ import annotations

from typing import Any

from bot.engine.conditions import ALWAYS, Answer, Answers, Condition, Switch
from bot.engine.dialog import Branch, ChoiceAction, ChoiceDef, Dialog, Step
from bot.engine.types import Link, P, T, Text
from dialogs import validators
from dialogs.languages import LANGUAGES

# The step ids, named once (each is also the key of its answer).
WELCOME = "welcome"
LANGUAGE = "language"
EXPERIENCE = "experience"
SERVICE_TYPE = "service_type"
NOT_COVERED = "not_covered"
OUTSIDE_ENGLAND = "outside_england"
SERVICE_OTHER = "service_other"
PROVIDER = "provider"
RELATIONSHIP = "relationship"
WORKS_THERE = "works_there"
WHISTLEBLOWING = "whistleblowing"
WHEN = "when"
SERVICE_PART = "service_part"
WHAT_HAPPENED = "what_happened"
SHARE_WITH_SERVICE = "share_with_service"
RISK = "risk"
AUTHORITIES = "authorities"
COMPLAINT = "complaint"
COMPLAINT_INFO = "complaint_info"
MHA = "mha"
CONTACT = "contact"
CONTACT_NAME = "contact_name"
CONTACT_EMAIL = "contact_email"
CONTACT_PHONE = "contact_phone"
ALERTS = "alerts"
REFERRAL = "referral"
REFERRAL_NAME = "referral_name"
SUMMARY = "summary"
EDIT_ANSWER = "edit_answer"
SUBMITTED = "submitted"
CANCELLED = "cancelled"
ENDED = "ended"

#: The deployment can deliver inspection-alert emails (email on, a public address for the
#: links): set by the app from its delivery settings (`build_engine`).
EMAIL_ALERTS = "email_alerts"

POOR_OR_MIXED = ("poor", "mixed")
MHA_SERVICES = ("mental_health", "hospital")

POOR: Condition = Answer(EXPERIENCE).is_in(*POOR_OR_MIXED)
GOOD_ONLY: Condition = Answer(EXPERIENCE).equals("good")
MHA_APPLIES: Condition = POOR & Answer(SERVICE_TYPE).is_in(*MHA_SERVICES)
GAVE_EMAIL: Condition = Answer(CONTACT_EMAIL).is_given()
#: Inspection alerts are about one registered location: offered only with an email address
#: and a service matched in the directory, and only where such emails can be sent at all.
ALERTS_OFFERED: Condition = (
    Switch(EMAIL_ALERTS) & GAVE_EMAIL & Answer(PROVIDER, "location_id").is_given()
)
#: A full postcode in an area wholly in Wales (CF, LL, SA; NP and LD without the districts
#: that cross the border: NP16 and NP25 near Chepstow and Monmouth, LD7 and LD8 near Knighton
#: and Presteigne), wholly in Scotland (AB, DD, EH, FK, G, HS, IV, KA, KW, KY, ML, PA, PH, ZE)
#: or in Northern Ireland (BT). Border areas that are partly in England (CH, DG, GL, HR, SY,
#: TD) are left alone: there we cannot tell from the postcode, so we do not guess.
NOT_ENGLAND_POSTCODE = (
    r"(?i)\b(?:(?:CF|LL|SA|AB|DD|EH|FK|HS|IV|KA|KW|KY|ML|PA|PH|ZE|BT)\d{1,2}[A-Z]?"
    r"|NP(?:[1-9]|1[0-57-9]|2[0-46-9])|LD[1-6]|G\d{1,2}[A-Z]?)"
    r"\s*\d[A-Z]{2}\b"
)
#: The service named was found outside England: not ours (matched in the directory: ours).
PROVIDER_NOT_IN_ENGLAND: Condition = (
    Answer(PROVIDER, "text").matches(NOT_ENGLAND_POSTCODE, "a postcode outside England")
    & ~Answer(PROVIDER, "location_id").is_given()
)
WANTS_CONTACT: Condition = Answer(CONTACT).equals("yes") & ~Answer(CONTACT_PHONE).equals(
    "no_contact"
)


def _acknowledgement_promise(how: str | None) -> tuple[Text, ...]:
    """What the confirmation promises: only the acknowledgement the service will send (the
    service tells the engine at submit; no email is promised when email is off)."""
    if how == "email":
        return (T("We will email you to say we got your report."),)
    if how == "sms":
        return (T("We will send you a text message to say we got your report."),)
    return ()


def _c(
    choice_id: str,
    label: Text,
    note: Text | None = None,
    when: Condition | None = None,
    action: ChoiceAction | None = None,
    *,
    links: tuple[Link, ...] = (),
    note_when: Condition | None = None,
) -> ChoiceDef:
    return ChoiceDef(choice_id, label, note, when, action, links, note_when)


YES, NO, NOT_SURE = T("Yes"), T("No"), T("I'm not sure")

# After relationship (and the whistleblowing detour): poor care asks when; good care goes to
# the account itself.
AFTER_RELATIONSHIP = (Branch(WHEN, POOR), Branch(WHAT_HAPPENED))
AFTER_COMPLAINT_INFO = (Branch(MHA, MHA_APPLIES), Branch(CONTACT))

STEPS: tuple[Step, ...] = (
    Step(
        WELCOME,
        "choice",
        prompt=(
            T(
                "Hello. This is the Care Quality Commission's feedback service. We check health "
                "and social care in England."
            ),
            T(
                "Tell us about care you had, or care you saw. We want to hear about poor care, "
                "abuse and neglect. We also want to hear about good care."
            ),
            T(
                "This is an automated chat, not a person. It takes about 10 minutes. To talk "
                "to a person instead, call us on {contact_phone}."
            ),
            T("If someone is in danger right now, call 999."),
            T(
                "What you tell us is kept private and used to check on care services. Choose "
                '"Privacy" to read how we use it.'
            ),
        ),
        links=(Link("contact_us", T("Other ways to contact us")),),
        links_at=2,
        choices=(
            _c("start", T("Start")),
            _c("privacy", T("Privacy"), action="privacy"),
            _c("language", T("Language"), action="language"),
        ),
        next=(Branch(EXPERIENCE),),
    ),
    Step(LANGUAGE, "language", prompt=(T("Which language would you like to use?"),)),
    Step(
        EXPERIENCE,
        "choice",
        prompt=(T("Was the care poor, good, or both?"),),
        choices=(
            _c("poor", T("Poor")),
            _c("good", T("Good")),
            _c("mixed", T("Both good and poor")),
        ),
        next=(Branch(SERVICE_TYPE),),
        summary_label=T("Kind of experience"),
    ),
    Step(
        SERVICE_TYPE,
        "choice",
        prompt=(T("What type of service was it?"),),
        choices=(
            _c("hospital", T("Hospital")),
            _c("care_home", T("Care home")),
            _c("home_care", T("Home care agency")),
            _c("hospice", T("Hospice")),
            _c("gp", T("GP practice, walk-in centre or out-of-hours service")),
            _c("dentist", T("Dentist")),
            _c("community", T("Community care, like district nurses or health visitors")),
            _c("clinic", T("Clinic, like family planning, slimming or cosmetic surgery")),
            _c("mental_health", T("Community mental health service")),
            _c("ambulance", T("Ambulance service")),
            _c("childrens_social_care", T("Children's social care")),
            _c("other", T("Something else, or I'm not sure")),
            _c(OUTSIDE_ENGLAND, T("The care was in Wales, Scotland or Northern Ireland")),
        ),
        next=(
            Branch(NOT_COVERED, Answer(SERVICE_TYPE).equals("childrens_social_care")),
            Branch(OUTSIDE_ENGLAND, Answer(SERVICE_TYPE).equals(OUTSIDE_ENGLAND)),
            Branch(SERVICE_OTHER, Answer(SERVICE_TYPE).equals("other")),
            Branch(PROVIDER),
        ),
        summary_label=T("Type of service"),
        help=T('Pick the closest one. If none fits, choose "Something else, or I\'m not sure".'),
    ),
    Step(
        NOT_COVERED,
        "choice",
        prompt=(
            T(
                "We do not check children's social care. Ofsted does. Please contact Ofsted "
                "about it. We have not kept anything you told us."
            ),
            T(
                "If you are worried that a child is being harmed, tell the local council or the "
                "police. If a child is in danger right now, call 999."
            ),
            T(
                "We do check health care for children, like hospitals, GPs and dentists. To "
                "tell us about that, choose a different service."
            ),
            T("Do you want to tell us about a different service?"),
        ),
        links=(
            Link("ofsted", T("Ofsted")),
            Link("report_child_abuse", T("Report a worry about a child")),
        ),
        links_at=1,
        choices=(
            _c("change_service", T("Choose a different service")),
            _c("end", T("End here"), note=T("Thank you. Goodbye.")),
        ),
        next=(Branch(SERVICE_TYPE),),
        exits={"end": "end"},
    ),
    Step(
        OUTSIDE_ENGLAND,
        "choice",
        prompt=(
            T(
                "We only check care in England. Care in Wales, Scotland and Northern Ireland "
                "is checked by other organisations. Please tell them instead."
            ),
            T(
                "Wales: Care Inspectorate Wales (social care) and Healthcare Inspectorate Wales "
                "(health care). Scotland: the Care Inspectorate (social care) and Healthcare "
                "Improvement Scotland (health care). Northern Ireland: the Regulation and "
                "Quality Improvement Authority (RQIA)."
            ),
            T(
                "If you end here, we keep nothing you told us. If you chose this by mistake, go "
                "back."
            ),
        ),
        links=(
            Link("wales_care", T("Care Inspectorate Wales")),
            Link("wales_health", T("Healthcare Inspectorate Wales")),
            Link("scotland_care", T("Care Inspectorate (Scotland)")),
            Link("scotland_health", T("Healthcare Improvement Scotland")),
            Link("northern_ireland", T("RQIA (Northern Ireland)")),
        ),
        links_at=1,
        choices=(
            _c("end", T("End here"), note=T("Thank you. Goodbye.")),
            _c("back", T("Go back"), action="back"),
        ),
        exits={"end": "end"},
    ),
    Step(
        SERVICE_OTHER,
        "text",
        prompt=(
            T(
                'Please describe the service in a few words. For example: "a private clinic" or "care at home".'
            ),
        ),
        max_length=1500,
        next=(Branch(PROVIDER),),
        summary_label=T("About the service"),
    ),
    Step(
        PROVIDER,
        "lookup",
        prompt=(
            T(
                "What is the name of the service, and where is it? Type the name and the town, "
                "street or postcode."
            ),
        ),
        max_length=1500,
        next=(Branch(OUTSIDE_ENGLAND, PROVIDER_NOT_IN_ENGLAND), Branch(RELATIONSHIP)),
        search_within=SERVICE_TYPE,
        summary_label=T("Service"),
        help=T(
            'Type what you know, like "Oak House care home, Leeds" or a postcode. We will look '
            "it up in our list of services. If we cannot find it, we keep what you typed."
        ),
    ),
    Step(
        RELATIONSHIP,
        "choice",
        prompt=(T("How do you know about this care?"),),
        choices=(
            _c("self", T("It was my care")),
            _c("friend_family", T("It was a friend's or relative's care")),
            _c("work", T("Through my job or voluntary work")),
        ),
        next=(
            Branch(WORKS_THERE, Answer(RELATIONSHIP).equals("work")),
            *AFTER_RELATIONSHIP,
        ),
        summary_label=T("How you know"),
    ),
    Step(
        WORKS_THERE,
        "choice",
        prompt=(
            T(
                "Do you work for this service, or did you in the past? This includes working "
                "as a volunteer or a contractor."
            ),
        ),
        choices=(_c("yes", YES), _c("no", NO)),
        next=(
            Branch(WHISTLEBLOWING, Answer(WORKS_THERE).equals("yes")),
            *AFTER_RELATIONSHIP,
        ),
        summary_label=T("You work or worked there"),
    ),
    Step(
        WHISTLEBLOWING,
        "info",
        prompt=(
            T(
                "Thank you. We want to hear from people who work in care. What you tell us helps us check the service."
            ),
            T(
                "Please know this: we cannot protect you if your employer takes action against "
                "you. Please also follow your employer's whistleblowing process. Every care "
                "service must have one."
            ),
            T(
                "The law may protect you. You may want advice from a union, a lawyer or a "
                "whistleblowing advice charity."
            ),
            T(
                "If you ever go to an employment tribunal, it may help you that you told us "
                "about your worries."
            ),
            T("Protect is a charity that gives free, private advice about whistleblowing."),
        ),
        links=(Link("whistleblowing_advice", T("Protect: whistleblowing advice")),),
        next=AFTER_RELATIONSHIP,
    ),
    Step(
        WHEN,
        "text",
        prompt=(
            T(
                'When did it happen? A date, a month, or "still happening" is fine. If you are '
                "not sure, choose Skip."
            ),
        ),
        max_length=1000,
        skippable=ALWAYS,
        next=(Branch(SERVICE_PART),),
        summary_label=T("When"),
    ),
    Step(
        SERVICE_PART,
        "text",
        prompt=(
            T(
                "Which part of the service was it? For example a ward, a floor, a room or a team. "
                "If you do not know, choose Skip."
            ),
        ),
        max_length=1000,
        skippable=ALWAYS,
        next=(Branch(WHAT_HAPPENED),),
        summary_label=T("Part of the service"),
    ),
    Step(
        WHAT_HAPPENED,
        "text",
        prompt=lambda a: (
            (
                (
                    T(
                        "Thank you. Telling us about good care helps all services learn and get better."
                    ),
                )
                if GOOD_ONLY.evaluate(a)
                else ()
            )
            + (
                T(
                    "Please tell us what happened. More detail helps us: what happened, who was "
                    "involved or their jobs, and examples."
                ),
                T(
                    "If you do not want the service to know it was you, leave out details that "
                    "could identify you."
                ),
            )
        ),
        max_length=20000,
        next=(Branch(SHARE_WITH_SERVICE),),
        summary_label=T("What happened"),
    ),
    Step(
        SHARE_WITH_SERVICE,
        "choice",
        prompt=(
            T(
                "Sharing your feedback means the service may see what you told us, so it can "
                "see what went well or what needs to change."
            ),
            T(
                "You can say no. We will still read your feedback and use it in our work, "
                "whatever you choose."
            ),
            T(
                "Even if you say no, we may still need to share it with others when someone is "
                "at risk of harm, when a crime has happened, or when another organisation must "
                "act to keep people safe."
            ),
            T("Can we share your feedback with the service?"),
        ),
        choices=(_c("yes", YES), _c("no", NO)),
        next=(Branch(RISK, POOR), Branch(CONTACT)),
        summary_label=T("Share with the service"),
    ),
    Step(
        RISK,
        "choice",
        prompt=(
            T(
                "If this is hard for you, you can talk to someone. For health advice, call NHS "
                "111. To talk about how you feel, call Samaritans free on 116 123, day or night."
            ),
            T("Is anyone at risk of harm or abuse right now?"),
        ),
        links=(
            Link("nhs_111", T("NHS 111")),
            Link("samaritans", T("Samaritans")),
        ),
        links_at=0,
        choices=(
            _c(
                "yes",
                YES,
                note=T(
                    "If someone is in danger right now, call 999 now. This chat will wait for "
                    "you. We treat your report as urgent only once you have sent it. When "
                    "someone is at risk, we pass information to the police or the local council, "
                    "who can act at once to protect them."
                ),
            ),
            _c("no", NO),
            _c(
                "not_sure",
                NOT_SURE,
                note=T(
                    "Thank you. Once you have sent your report, we will look at it urgently. If "
                    "someone is in danger right now, call 999 now. This chat will wait for you."
                ),
            ),
        ),
        next=(Branch(AUTHORITIES),),
        summary_label=T("Someone at risk now"),
    ),
    Step(
        AUTHORITIES,
        "choice",
        prompt=(
            T(
                "Have you told the police or the local council's safeguarding team? This helps "
                "us know who already knows."
            ),
        ),
        choices=(
            _c("police", T("The police")),
            _c("council", T("The council's safeguarding team")),
            _c("both", T("Both")),
            _c(
                "neither",
                T("Neither"),
                note=T(
                    "Please also tell the local council's adult safeguarding team. They can act "
                    "to protect the person. Your council's website says how, or call the council "
                    "and ask for adult safeguarding."
                ),
                note_when=Answer(RISK).is_in("yes", "not_sure"),
                links=(Link("find_council", T("Find your local council")),),
            ),
        ),
        next=(Branch(COMPLAINT),),
        summary_label=T("Told the police or council"),
    ),
    Step(
        COMPLAINT,
        "choice",
        prompt=(T("Have you told the service about this?"),),
        choices=(
            _c("told", T("Yes, I told them")),
            _c("formal", T("Yes, I made a formal complaint")),
            _c("not_yet", T("Not yet")),
        ),
        next=(Branch(COMPLAINT_INFO),),
        summary_label=T("Told the service"),
    ),
    Step(
        COMPLAINT_INFO,
        "info",
        prompt=(
            T(
                "You have the right to complain to the organisation that gave the care or paid "
                "for it. Every service must have a complaints process and must answer a formal "
                "complaint."
            ),
            T(
                "We cannot make your complaint for you or take it up for you. This is because "
                "we do not have the power to look into single complaints or settle them."
            ),
            T(
                "But please tell us too, as you are doing now. It helps us see how well the "
                "service cares for people, and it can protect others."
            ),
            T(
                "How to complain: to the service first. About NHS care, you can also complain "
                "to the NHS. About care the council arranged or paid for, complain to the "
                "council. If you are not happy with the answer, an ombudsman can look at it: "
                "the Parliamentary and Health Service Ombudsman for NHS care, and the Local "
                "Government and Social Care Ombudsman for social care."
            ),
        ),
        links=(
            Link("complain_provider", T("How to complain about a service")),
            Link("complain_nhs", T("Complain about NHS care")),
            Link("find_council", T("Find your local council")),
            Link("ombudsman_nhs", T("Parliamentary and Health Service Ombudsman")),
            Link("ombudsman_social_care", T("Local Government and Social Care Ombudsman")),
        ),
        next=AFTER_COMPLAINT_INFO,
    ),
    Step(
        MHA,
        "choice",
        prompt=(
            T(
                'Has the person been "sectioned"? That means they are kept in hospital under the '
                "Mental Health Act, even if they want to leave. Or are they on a community "
                "treatment order?"
            ),
            T(
                'If you do not know, choose "I\'m not sure". That is fine: we will still read '
                "your report, and we may ask you about it if you let us contact you."
            ),
        ),
        choices=(
            _c(
                "yes",
                YES,
                note=Text.lines(
                    T(
                        "This is the one time we can sometimes act for someone. In some cases we "
                        "can act for a person whose rights are restricted under the Mental "
                        "Health Act. You can also complain to us about how the Act was used. "
                        'Search "CQC complain about the Mental Health Act" to find out how.'
                    ),
                    T(
                        "An independent mental health advocate (IMHA) can help the person "
                        "understand their rights and speak up. Ask the ward or the care team "
                        "how to reach one."
                    ),
                ),
                links=(Link("complain_mha", T("Complain about the use of the Mental Health Act")),),
            ),
            _c("no", NO),
            _c("not_sure", NOT_SURE),
        ),
        next=(Branch(CONTACT),),
        summary_label=T("Mental Health Act"),
    ),
    Step(
        CONTACT,
        "choice",
        prompt=(
            T(
                "May we contact you to find out more? You do not have to say yes. But we can do "
                "more with feedback when we can ask you about it."
            ),
            T(
                "We keep your details private. We only share them if someone is at risk of harm, "
                "if a crime has happened, or if another organisation must act to keep people safe."
            ),
        ),
        choices=(
            _c("yes", YES),
            _c("no", NO, note=T("That is fine. We will still read and use what you told us.")),
        ),
        next=(Branch(CONTACT_NAME, Answer(CONTACT).equals("yes")), Branch(REFERRAL)),
        summary_label=T("May we contact you"),
    ),
    Step(
        CONTACT_NAME,
        "text",
        prompt=(T("What is your name?"),),
        max_length=500,
        validate=validators.person_name,
        next=(Branch(CONTACT_EMAIL),),
        summary_label=T("Your name"),
    ),
    Step(
        CONTACT_EMAIL,
        "text",
        prompt=(
            T("What is your email address? If you would rather give a phone number, choose Skip."),
        ),
        max_length=validators.EMAIL_MAX,
        validate=validators.email_address,
        skippable=ALWAYS,
        next=(Branch(CONTACT_PHONE),),
        summary_label=T("Email"),
    ),
    Step(
        CONTACT_PHONE,
        "text",
        prompt=lambda a: (
            (T("What is your UK phone number? If you do not want to give one, choose Skip."),)
            if GAVE_EMAIL.evaluate(a)
            else (
                T(
                    "What is your UK phone number? We need an email address or a phone number to contact you."
                ),
            )
        ),
        choices=(_c("no_contact", T("Do not contact me"), when=~GAVE_EMAIL),),
        max_length=validators.PHONE_MAX,
        validate=validators.uk_phone,
        skippable=GAVE_EMAIL,
        next=(Branch(ALERTS, ALERTS_OFFERED), Branch(REFERRAL)),
        summary_label=T("Phone"),
    ),
    Step(
        ALERTS,
        "choice",
        prompt=(
            T("Would you like an email when we publish a new inspection report on this service?"),
        ),
        choices=(_c("yes", YES), _c("no", NO)),
        next=(Branch(REFERRAL),),
        summary_label=T("Email alerts"),
    ),
    Step(
        REFERRAL,
        "choice",
        prompt=(T("Did a charity, an advocate or another organisation suggest that you tell us?"),),
        choices=(_c("yes", YES), _c("no", NO)),
        next=(Branch(REFERRAL_NAME, Answer(REFERRAL).equals("yes")), Branch(SUMMARY)),
        summary_label=T("Suggested by an organisation"),
    ),
    Step(
        REFERRAL_NAME,
        "text",
        prompt=(T("Which organisation was it? If you would rather not say, choose Skip."),),
        max_length=200,
        skippable=ALWAYS,
        next=(Branch(SUMMARY),),
        summary_label=T("Which organisation"),
    ),
    Step(
        SUMMARY,
        "summary",
        choices=(
            _c("submit", T("Send my report"), action="submit"),
            _c("edit", T("Change an answer"), action="edit"),
            _c("restart", T("Start again"), action="restart"),
        ),
    ),
    Step(EDIT_ANSWER, "edit"),
    Step(
        SUBMITTED,
        "submitted",
        receipt=lambda receipt: (
            T(
                "Thank you. We have your report. Your reference number is {reference}. Keep "
                "this number, and quote it if you contact us about this report."
            ),
            T(
                "What happens next: we read every report. We look at urgent ones first. We may "
                "ask the service to respond, meet its managers, share what you told us with "
                "other organisations, or inspect it. We can also warn or fine a service, or put "
                "conditions on it. In the worst cases we can close it."
            ),
            *_acknowledgement_promise(receipt.acknowledgement),
            T("You may not hear more from us, but we will still use what you told us."),
        ),
    ),
    Step(CANCELLED, "cancelled"),
    Step(ENDED, "ended"),
)

MESSAGES: dict[str, Text] = {
    "choose_one": T(
        "Sorry, I did not understand. Please choose one of the options, or type its number."
    ),
    "stale_choice": T(
        "That button was for an earlier question. Here is the question we are on now."
    ),
    "empty_text": T("Please type your answer."),
    "too_long": P(
        "That is too long. It has {length} characters, and the limit is {limit} character. Please make it shorter.",
        "That is too long. It has {length} characters, and the limit is {limit} characters. Please make it shorter.",
        2,
    ),
    "help": T(
        "Answer the question, or use these commands at any time: {back} (go back one question), "
        "{restart} (start again), {privacy}, {language}, {cancel} (stop and keep nothing), "
        "{exit} (leave at once and keep nothing). If someone is in danger right now, call 999."
    ),
    # {back} ... {exit}: the person's own command words (bot/engine/commands.py).
    "unknown_command": T(
        "I don't know that command. You can use: {back}, {restart}, {help}, {privacy}, "
        "{language}, {cancel}, {exit}."
    ),
    "privacy": T(
        "Your privacy: we keep what you tell us private. But we may need to share it. For "
        "example: with the council or the police if we believe someone is at risk of harm; with "
        "the police if a crime has been committed; with another organisation that must act to "
        "keep care safe. If you cancel, we keep nothing. Read our full privacy notice: "
        "{privacy_url}"
    ),
    "cannot_go_back": T("This is the first question, so there is nothing to go back to."),
    "cancelled": T(
        "You have cancelled. We have not kept anything you told us. You can start again at any time."
    ),
    # The quick exit's reply (bot/engine/commands.py): someone may be reading over the
    # person's shoulder, so it says nothing of what the chat was about.
    "exited": T("Chat closed."),
    "ended": T(
        "This conversation has ended. To tell us about something else, please start a new one."
    ),
    "already_submitted": T(
        "Your report has been sent. Its reference number is {reference}. It cannot be changed now. "
        "To tell us something new, please start a new conversation."
    ),
    "restarted": T("Let's start again."),
    "no_matches": T(
        "I could not find that service in our list. That is fine: we have kept what you typed."
    ),
    "matches_intro": T(
        'Is it one of these? If not, choose "None of these", or type the name again.'
    ),
    "preselected_intro": T("Is this the service you want to tell us about?"),
    "summary_intro": T("Here are your answers. Please check them before you send your report."),
    # {n}: the row's number, for "change {n}" in text channels.
    "summary_line": T("{n}. {label}: {answer}"),
    "skipped": T("Not given"),
    # {change}: the word to type (bot/engine/commands.py); {n}: the number of a row.
    "change_hint": T("To change an answer, type {change} and its number, like this: {change} {n}"),
    # {value}: the answer as it is now, so the person can copy it and fix it.
    "current_value": T("Your answer now: {value}"),
    "edit_intro": T("Which answer do you want to change?"),
    "missing_answers": T(
        "Before you send your report, please answer a question we have not asked you yet."
    ),
    "language_changed": T("OK. I will speak English."),
}

COMMON_CHOICES: dict[str, Text] = {
    "skip": T("Skip"),
    "continue": T("Continue"),
    "none": T("None of these"),
    "summary": T("Back to the summary"),
}


def build_report(answers: Answers) -> dict[str, Any]:
    """The record the intake team reads: choice ids, free text verbatim, nothing rendered."""

    def value(key: str) -> Any:
        raw = answers.get(key)
        return None if raw in (None, "skip") else raw

    provider = answers.get(PROVIDER) or {}
    contact = None
    if WANTS_CONTACT.evaluate(answers):
        contact = {
            "name": value(CONTACT_NAME),
            "email": value(CONTACT_EMAIL),
            "phone": value(CONTACT_PHONE),
        }
    risk = value(RISK)
    priority = {"yes": "urgent", "not_sure": "urgent_review"}.get(risk or "", "routine")
    return {
        "priority": priority,
        "urgent": priority == "urgent",
        "urgent_review": priority == "urgent_review",
        "experience": value(EXPERIENCE),
        "service_type": value(SERVICE_TYPE),
        "service_other": value(SERVICE_OTHER),
        "provider_text": provider.get("text"),
        "location_id": provider.get("location_id"),
        "provider_name": provider.get("name"),
        "relationship": value(RELATIONSHIP),
        "works_there": value(WORKS_THERE),
        "when": value(WHEN),
        "service_part": value(SERVICE_PART),
        "what_happened": value(WHAT_HAPPENED),
        "share_with_service": value(SHARE_WITH_SERVICE),
        "risk": risk,
        "authorities": value(AUTHORITIES),
        "complaint": value(COMPLAINT),
        "mha": value(MHA),
        "contact": contact,
        "alerts": value(ALERTS) if contact and contact.get("email") else None,
        "referral": value(REFERRAL),
        "referral_name": value(REFERRAL_NAME),
    }


INTAKE = Dialog(
    steps=STEPS,
    first_step="welcome",
    build_report=build_report,
    messages=MESSAGES,
    common_choices=COMMON_CHOICES,
    languages=LANGUAGES,
)
